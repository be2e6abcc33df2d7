"""sql/queries.sql runs as written on SQLite and PostgreSQL."""
import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

import registry_helpers as helpers
from conftest import REPO
from imgpipe.registry import store


def queries(dialect: str) -> dict:
    """name -> SQL, keeping the variant for `dialect` where there are two."""
    found = {}
    for block in re.split(r"\n(?=-- name: )", (REPO / "sql" / "queries.sql").read_text()):
        match = re.match(r"-- name: (\w+)(?: \[(\w+)\])?\n", block)
        if not match or match.group(2) not in (None, dialect):
            continue
        body = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
        found[match.group(1)] = body.strip().rstrip(";")
    return found


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store.migrate(url)
    engine = store.engine_for(url)
    for uid, accuracy in (("a", 0.8), ("b", 0.9)):
        row = helpers.new_version(uid, accuracy=accuracy)
        store.register(engine, row, lambda v: f"/serving/tiny/{v}")
    store.promote(engine, "b")
    return request.param, engine


def test_every_query_runs_and_answers(registry):
    dialect, engine = registry
    sql = queries(dialect)
    assert set(sql) == {"register_model_version", "current_champions", "model_history",
                        "best_by_class_f1", "unfinished_pushes", "same_data_and_schema"}
    with engine.begin() as connection:
        connection.execute(sa.text(sql["register_model_version"]), {
            "model_uid": "cnn_cifar10_v1_2", "architecture_type": "Sequential-CNN",
            "val_accuracy": 0.7042, "artifact_path": "gs://models/tiny/3",
            "training_date": dt.datetime.now(dt.timezone.utc), "model_name": "tiny",
            "per_class_f1": json.dumps({"dark": 0.95, "bright": 0.5, "t.shirt": 0.7}),
            "blessed": True,
            "data_fingerprint": "d" * 64, "schema_hash": "s" * 64,
            "training_config": "{}", "augmentation_config": "{}", "library_versions": "{}"})
    with engine.connect() as connection:
        def run(name, **params):
            return [tuple(row) for row in connection.execute(sa.text(sql[name]), params)]
        assert [r[:3] for r in run("current_champions")] == [("tiny", 2, "b")]
        assert [r[:3] for r in run("model_history", model_name="tiny")] == [
            (3, "cnn_cifar10_v1_2", "registered"), (2, "b", "champion"), (1, "a", "registered")]
        best = run("best_by_class_f1", model_name="tiny", class_name="dark")
        assert [r[1] for r in best] == ["cnn_cifar10_v1_2", "b", "a"]
        assert best[0][3] == pytest.approx(0.95)
        assert run("best_by_class_f1", model_name="tiny", class_name="x' OR '1'='1") == []
        # A dotted class name is one key (SQLite's JSON path would read t -> shirt).
        dotted = run("best_by_class_f1", model_name="tiny", class_name="t.shirt")
        assert [(r[1], r[3]) for r in dotted] == [("cnn_cifar10_v1_2", pytest.approx(0.7))]
        assert [r[2] for r in run("unfinished_pushes")] == ["a", "b", "cnn_cifar10_v1_2"]
        assert {r[2] for r in run("same_data_and_schema", model_uid="a")} == {"b", "cnn_cifar10_v1_2"}

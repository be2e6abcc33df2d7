"""`imgpipe registry ...` against SQLite and a real PostgreSQL (no pipeline run)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import registry_helpers as helpers
from imgpipe.pipeline import cli
from imgpipe.registry import mlflow_sync, publish, store
from imgpipe.registry.models import COLUMNS


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def pushed(request, tmp_path, monkeypatch):
    """Three pushed versions of `tiny` (m1 < m2 champion, m3 not promoted) and one of `other`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        # Trust authentication ignores the password: it is only there to be masked.
        url = request.getfixturevalue("postgres_url").replace("postgres@", "postgres:s3cret-pw@")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv(store.REGISTRY_URL_ENV, url)
    monkeypatch.setenv(mlflow_sync.TRACKING_URI_ENV, tracking)
    model = str(helpers.write_tiny_saved_model(tmp_path / "model"))
    store.migrate(url)
    mlflow_sync.ensure_store(tracking)
    pushes = [("m1", "tiny", 0.80, None), ("m2", "tiny", 0.90, "m1"), ("m3", "tiny", 0.85, "m1"),
              ("o1", "other", 0.70, None)]
    for uid, name, accuracy, expected in pushes:
        publish.publish(url, tracking, str(tmp_path / "serving"), model,
                        helpers.new_version(uid, model_name=name, accuracy=accuracy),
                        helpers.run_record(uid, str(tmp_path / "mla")), expected_champion=expected)
    return {"url": url, "tracking": tracking, "tmp": tmp_path}


def invoke(*args):
    return CliRunner().invoke(cli.main, ["registry", *map(str, args)], catch_exceptions=False)


def test_list_table_json_csv_carry_every_column(pushed):
    table = invoke("list")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split()[:4] == ["model_name", "version", "status", "model_uid"]
    assert len(table.output.splitlines()) == 5

    rows = json.loads(invoke("list", "--model", "tiny", "--format", "json").output)
    assert [r["model_uid"] for r in rows] == ["m3", "m2", "m1"]
    assert all(list(r) == COLUMNS for r in rows)
    assert rows[1]["status"] == "champion" and rows[1]["per_class_f1"] == {"dark": 0.9, "bright": 0.9}

    parsed = list(csv.DictReader(io.StringIO(invoke("list", "--format", "csv").output)))
    assert list(parsed[0]) == COLUMNS and len(parsed) == 4
    assert json.loads(parsed[0]["training_config"])["epochs"] == 1


def test_filters(pushed):
    def uids(*args):
        return [r["model_uid"] for r in json.loads(invoke("list", "--format", "json", *args).output)]
    assert uids("--status", "champion") == ["o1", "m2"]
    assert uids("--min-accuracy", "0.85") == ["m3", "m2"]
    assert uids("--model", "tiny", "--status", "registered") == ["m3"]


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", "tiny' --", "tiny'; DROP TABLE model_registry; --"])
def test_filter_values_are_inert(pushed, hostile):
    result = invoke("list", "--model", hostile, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output) == []
    assert len(json.loads(invoke("list", "--format", "json").output)) == 4   # table intact
    refused = invoke("list", "--status", "champion' OR '1'='1")
    assert refused.exit_code == 2 and "Invalid value for '--status'" in refused.output
    assert invoke("list", "--min-accuracy", "0 OR 1=1").exit_code == 2


def test_show_promote_rollback_move_both_stores(pushed):
    shown = invoke("show", "m3")
    assert shown.exit_code == 0 and "model_uid" in shown.output and "m3" in shown.output
    assert json.loads(invoke("show", "m3", "--format", "json").output)["status"] == "registered"
    missing = invoke("show", "nope")
    assert missing.exit_code == 1 and "no model version with uid 'nope'" in missing.output

    engine = store.engine_for(pushed["url"])
    promoted = invoke("promote", "m3")
    assert promoted.exit_code == 0, promoted.output
    assert "m3 (tiny version 3) is champion; m2 (version 2) is archived" in promoted.output
    assert mlflow_sync.champion_version(pushed["tracking"], "tiny") == \
        store.get(engine, "m3").mlflow_model_version

    rolled = invoke("rollback", "--model", "tiny")
    assert rolled.exit_code == 0, rolled.output
    assert "m2 (tiny version 2) is champion; m3 (version 3) is rolled_back" in rolled.output
    assert store.champion(engine, "tiny").model_uid == "m2"
    assert mlflow_sync.champion_version(pushed["tracking"], "tiny") == \
        store.get(engine, "m2").mlflow_model_version

    to = invoke("rollback", "--model", "tiny", "--to", "m1")
    assert to.exit_code == 0 and store.champion(engine, "tiny").model_uid == "m1"
    assert mlflow_sync.champion_version(pushed["tracking"], "tiny") == 1
    wrong = invoke("rollback", "--model", "tiny", "--to", "o1")
    assert wrong.exit_code == 1 and "is a version of 'other'" in wrong.output


def test_migrate_down_and_up_and_passwords_never_printed(pushed):
    outputs = [invoke("list").output, invoke("promote", "m3").output]
    down = invoke("migrate", "--downgrade-to", "base")
    assert down.exit_code == 0 and "schema revision 0002 -> none" in down.output
    unmigrated = invoke("list")
    assert unmigrated.exit_code == 1 and "run `imgpipe registry migrate`" in unmigrated.output
    up = invoke("migrate")
    assert up.exit_code == 0 and "schema revision none -> 0002" in up.output
    assert "MLflow sqlite:///" in up.output and "store ready" in up.output
    assert json.loads(invoke("list", "--format", "json").output) == []
    outputs += [down.output, unmigrated.output, up.output]
    if "s3cret-pw" in pushed["url"]:
        assert all("s3cret-pw" not in output for output in outputs)
        assert "postgres:***@127.0.0.1" in up.output


def test_unreachable_registry_is_reported_with_a_masked_url(monkeypatch):
    monkeypatch.setenv(store.REGISTRY_URL_ENV, "postgresql+psycopg2://ml:hunter2@127.0.0.1:9/reg")
    result = invoke("list")
    assert result.exit_code == 1
    assert "cannot reach the registry at postgresql+psycopg2://ml:***@127.0.0.1:9/reg" in result.output
    assert "hunter2" not in result.output

"""Registry store, migrations and the publish protocol, on SQLite and a real PostgreSQL."""
from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

import registry_helpers as helpers
from conftest import REPO
from imgpipe.registry import ddl, mlflow_sync, publish, store
from imgpipe.registry.models import Base, ModelVersion

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def registry_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def migrated(registry_url) -> str:
    store.migrate(registry_url)
    return registry_url


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(helpers.write_tiny_saved_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_sync.ensure_store(uri)
    return uri


TABLES = ("model_registry", "prediction_log", "feedback", "promotion_decision")


def _index_predicate(index: dict) -> str:
    """A partial index's WHERE as reflected (sqlite_where / postgresql_where)."""
    options = index.get("dialect_options") or {}
    return " ".join(str(value) for key, value in sorted(options.items()) if key.endswith("_where"))


def _schema_view(url: str) -> dict:
    inspector = sa.inspect(store.engine_for(url))
    return {table: {
        # repr: the type with its arguments (length, timezone), not just its name.
        "columns": [(c["name"], repr(c["type"]), c["nullable"])
                    for c in inspector.get_columns(table)],
        "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]),
                           _index_predicate(i)) for i in inspector.get_indexes(table)),
        "unique": sorted(u["name"] for u in inspector.get_unique_constraints(table)),
        "checks": sorted((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)),
    } for table in TABLES}


def test_migrations_up_down_and_up(registry_url):
    assert store.migrate(registry_url) == store.head_revision()
    view = _schema_view(registry_url)
    assert [column[0] for column in view["model_registry"]["columns"]][:6] == [
        "id", "model_uid", "architecture_type", "val_accuracy", "artifact_path", "training_date"]
    [champion_index] = [i for i in view["model_registry"]["indexes"]
                        if i[0] == "uq_model_registry_one_champion"]
    assert champion_index[1:3] == (("model_name",), True) and "'champion'" in champion_index[3]
    assert [name for name, _ in view["model_registry"]["checks"]] == [
        "ck_model_registry_status", "ck_model_registry_version_positive"]
    # A step down and up keeps the rows (SQLite's batch mode copies the table).
    engine = store.engine_for(registry_url)
    store.register(engine, helpers.new_version("kept"), lambda v: "/serve")
    assert store.downgrade(registry_url, "0001") == "0001"
    assert "prediction_log" not in sa.inspect(engine).get_table_names()
    assert store.migrate(registry_url) == store.head_revision()
    assert [r.model_uid for r in store.list_versions(engine)] == ["kept"]
    assert store.downgrade(registry_url, "base") is None
    assert "model_registry" not in sa.inspect(store.engine_for(registry_url)).get_table_names()
    with pytest.raises(store.RegistryError, match="registry migrate"):
        store.require_schema(registry_url)
    store.migrate(registry_url)
    assert _schema_view(registry_url) == view


def test_new_registry_and_mlflow_sqlite_files_are_owner_only(tmp_path):
    old_umask = os.umask(0o022)      # the usual umask would give 0644
    try:
        store.migrate(f"sqlite:///{tmp_path / 'new' / 'registry.db'}")
        mlflow_sync.ensure_store(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
        kept = tmp_path / "kept.db"
        kept.touch(mode=0o640)       # an existing file keeps the mode its owner gave it
        store.migrate(f"sqlite:///{kept}")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new" / "registry.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new" / "mlflow.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640


def test_alembic_head_is_the_models(migrated):
    """Columns (types, nullability, server defaults), keys, unique constraints
    and indexes of `upgrade head` against models.py. compare_metadata does not
    look at CHECK constraints or partial-index predicates: the two DDL tests
    below cover those (sql/ is rendered from the models, and its schema must
    reflect exactly like Alembic's)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    with store.engine_for(migrated).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.mark.postgres
def test_concurrent_migrations_of_a_fresh_postgresql_database(postgres_url):
    # Without the migration lock, the processes race on CREATE TABLE.
    processes = 6
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    workers = [context.Process(target=helpers.migrate_at_once, args=(barrier, postgres_url))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [worker.exitcode for worker in workers] == [0] * processes
    assert store.current_revision(postgres_url) == store.head_revision()
    assert set(TABLES) <= set(sa.inspect(store.engine_for(postgres_url)).get_table_names())


@pytest.mark.parametrize("dialect", sorted(ddl.DIALECTS))
def test_sql_ddl_files_are_the_models(dialect):
    assert ddl.path_for(REPO / "sql", dialect).read_text() == ddl.render(dialect), \
        "sql/ is stale: run `python -m imgpipe.registry.ddl sql`"


def test_sql_ddl_builds_the_schema_alembic_builds(registry_url, tmp_path):
    dialect = sa.engine.make_url(registry_url).get_backend_name()
    script = ddl.path_for(REPO / "sql", dialect).read_text()
    statements = [s for s in script.split(";") if s.strip()
                  and not all(line.startswith("--") for line in s.strip().splitlines())]
    with store.engine_for(registry_url).begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    by_hand = _schema_view(registry_url)
    with store.engine_for(registry_url).begin() as connection:
        for table in TABLES:
            connection.exec_driver_sql(f"DROP TABLE {table}")
    store.migrate(registry_url)
    assert _schema_view(registry_url) == by_hand


def test_register_is_idempotent_and_versions_follow(migrated):
    engine = store.require_schema(migrated)
    first, created = store.register(engine, helpers.new_version("a"), lambda v: f"/serve/{v}")
    assert (first.version, created, first.artifact_path) == (1, True, "/serve/1")
    again, created = store.register(engine, helpers.new_version("a"), lambda v: f"/serve/{v}")
    assert (again.version, created) == (1, False)
    second, _ = store.register(engine, helpers.new_version("b"), lambda v: f"/serve/{v}")
    other_name, _ = store.register(engine, helpers.new_version("c", model_name="other"),
                                   lambda v: f"/serve/{v}")
    assert (second.version, other_name.version) == (2, 1)
    assert len(store.list_versions(engine)) == 3
    unblessed = helpers.new_version("d")
    unblessed.blessed = False
    with pytest.raises(store.RegistryError, match="not blessed"):
        store.register(engine, unblessed, lambda v: "")


def test_database_refuses_a_second_champion(migrated):
    engine = store.require_schema(migrated)
    for uid in ("a", "b"):
        store.register(engine, helpers.new_version(uid), lambda v: "")
    store.promote(engine, "a")
    with pytest.raises(IntegrityError):
        with engine.begin() as connection:
            connection.execute(sa.update(ModelVersion).where(ModelVersion.model_uid == "b")
                               .values(status="champion"))
    with pytest.raises(IntegrityError):
        with engine.begin() as connection:
            connection.execute(sa.update(ModelVersion).where(ModelVersion.model_uid == "b")
                               .values(status="deleted"))


def test_filter_values_are_inert(migrated):
    engine = store.require_schema(migrated)
    store.register(engine, helpers.new_version("a"), lambda v: "")
    assert store.list_versions(engine, model_name="x' OR '1'='1") == []
    assert store.list_versions(engine, model_name="tiny'; DROP TABLE model_registry; --") == []
    with pytest.raises(store.RegistryError, match="unknown status"):
        store.list_versions(engine, status="champion' OR '1'='1")
    assert [r.model_uid for r in store.list_versions(engine, model_name="tiny")] == ["a"]


def test_publish_promotes_and_rollback_restores_in_both_stores(migrated, tracking_uri,
                                                                tiny_model, tmp_path):
    def push(uid, expected):
        return publish.publish(migrated, tracking_uri, str(tmp_path / "serving"), tiny_model,
                               helpers.new_version(uid),
                               helpers.run_record(uid, str(tmp_path / "mlartifacts")),
                               expected_champion=expected)

    first = push("m1", None)
    assert first.champion and first.version == 1
    assert (Path(first.serving_dir) / "saved_model.pb").is_file()
    assert first.serving_dir == str(tmp_path / "serving" / "tiny" / "1")
    second = push("m2", "m1")
    assert second.champion and second.version == 2
    stale = push("m3", "m1")   # evaluated against m1, but m2 is champion now
    assert not stale.champion and "champion changed" in stale.note
    engine = store.engine_for(migrated)
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == second.mlflow_version

    rolled_back, restored = store.rollback(engine, "tiny")
    publish.follow_champion(engine, tracking_uri, "tiny")
    assert (rolled_back.model_uid, restored.model_uid) == ("m2", "m1")
    statuses = {r.model_uid: r.status for r in store.list_versions(engine)}
    assert statuses == {"m1": "champion", "m2": "rolled_back", "m3": "registered"}
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == first.mlflow_version

    # A rollback with no earlier champion left names what to do.
    with pytest.raises(store.RegistryError, match="--to UID"):
        store.rollback(engine, "tiny")
    store.rollback(engine, "tiny", to_uid="m3")
    publish.follow_champion(engine, tracking_uri, "tiny")
    assert store.champion(engine, "tiny").model_uid == "m3"
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == stale.mlflow_version


def test_a_re_push_never_re_promotes_an_archived_or_rolled_back_version(
        migrated, tracking_uri, tiny_model, tmp_path):
    def push(uid, expected):
        return publish.publish(migrated, tracking_uri, str(tmp_path / "serving"), tiny_model,
                               helpers.new_version(uid),
                               helpers.run_record(uid, str(tmp_path / "mlartifacts")),
                               expected_champion=expected)

    engine = store.engine_for(migrated)
    first, second = push("m1", None), push("m2", "m1")
    store.rollback(engine, "tiny")
    publish.follow_champion(engine, tracking_uri, "tiny")
    # m2's pipeline run retried: it was evaluated against m1, the champion again.
    again = push("m2", "m1")
    assert not again.champion and again.note.startswith("not promoted: rolled_back")
    assert {r.model_uid: r.status for r in store.list_versions(engine)} == \
        {"m1": "champion", "m2": "rolled_back"}
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == first.mlflow_version

    # By hand (no expected champion) it is still promoted: the override.
    assert store.promote(engine, "m2") == (True, "")
    publish.follow_champion(engine, tracking_uri, "tiny")
    again = push("m1", "m2")
    assert not again.champion and again.note.startswith("not promoted: archived")
    assert {r.model_uid: r.status for r in store.list_versions(engine)} == \
        {"m1": "archived", "m2": "champion"}
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == second.mlflow_version


def test_sqlite_reads_do_not_wait_for_the_write_lock(tmp_path, monkeypatch):
    import sqlite3
    # A reader that did queue for the lock fails after 1 s instead of 60.
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    store.migrate(url)
    engine = store.engine_for(url)
    store.register(engine, helpers.new_version("a"), lambda v: "/serve/1")
    store.promote(engine, "a")
    # Another process mid-write (e.g. a promotion waiting on MLflow).
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert store.champion(engine, "tiny").model_uid == "a"
        assert [r.model_uid for r in store.list_versions(engine)] == ["a"]
        assert store.get(engine, "a").version == 1
        assert store.version_of(engine, "tiny", 1).model_uid == "a"
        assert store.current_revision(url) == store.head_revision()
        assert store.require_schema(url) is engine
        # Writers still take the lock, so they wait, retry, and give up with
        # a clear error (not an OperationalError traceback).
        with pytest.raises(store.RegistryError, match="stayed locked by another writer"):
            store.register(engine, helpers.new_version("b"), lambda v: "/serve/2")
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_lock_timeout_is_retried(tmp_path, monkeypatch):
    import sqlite3
    import threading
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    store.migrate(url)
    engine = store.engine_for(url)
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    # The other writer finishes after the first busy timeout: the retry succeeds.
    release = threading.Timer(1.5, lambda: writer.execute("ROLLBACK"))
    release.start()
    try:
        row, created = store.register(engine, helpers.new_version("b"), lambda v: "/serve/1")
        assert created and row.version == 1
    finally:
        release.join()
        writer.close()


def test_an_alias_move_that_lost_a_race_to_another_writer_is_tried_again(
        tmp_path, tracking_uri, tiny_model, monkeypatch):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    store.migrate(url)
    serving, artifacts = str(tmp_path / "serving"), str(tmp_path / "mlartifacts")
    first = publish.publish(url, tracking_uri, serving, tiny_model, helpers.new_version("r1"),
                            helpers.run_record("r1", artifacts))
    real_set_champion, calls = mlflow_sync.set_champion, []

    def racing(*args):
        calls.append(args)
        if len(calls) == 1:   # what MLflow's store raised under concurrent pushers
            raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                               "registered_model_aliases.name, registered_model_aliases.alias")
        return real_set_champion(*args)
    monkeypatch.setattr(mlflow_sync, "set_champion", racing)
    engine = store.engine_for(url)
    assert publish.follow_champion(engine, tracking_uri, "tiny") == first.mlflow_version
    assert len(calls) == 2


def test_crash_between_commit_and_alias_move_is_flagged_and_repaired(
        migrated, tracking_uri, tiny_model, tmp_path, monkeypatch):
    serving, artifacts = str(tmp_path / "serving"), str(tmp_path / "mlartifacts")
    first = publish.publish(migrated, tracking_uri, serving, tiny_model,
                            helpers.new_version("m1"), helpers.run_record("m1", artifacts))
    engine = store.engine_for(migrated)
    real_set_champion = mlflow_sync.set_champion

    def crash(*_args):
        raise ConnectionError("MLflow went away at http://u:pw-9@mlflow.example/")
    monkeypatch.setattr(mlflow_sync, "set_champion", crash)
    with pytest.raises(store.RegistryError, match="registry repair") as failed:
        publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version("m2"),
                        helpers.run_record("m2", artifacts), expected_champion="m1")
    assert "pw-9" not in str(failed.value) and "u:***@mlflow.example" in str(failed.value)
    # The registry (the source of truth) moved; MLflow's alias lags, visibly.
    assert store.champion(engine, "tiny").model_uid == "m2"
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == first.mlflow_version
    [flagged] = publish.disagreements(engine, tracking_uri)
    assert flagged.startswith("tiny: registry champion m2") and "version 1" in flagged

    monkeypatch.setattr(mlflow_sync, "set_champion", real_set_champion)
    [done] = publish.repair(engine, tracking_uri)
    assert "moved to version 2 (was version 1)" in done
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == 2
    assert publish.disagreements(engine, tracking_uri) == []
    assert "already in agreement" in publish.repair(engine, tracking_uri)[0]


def test_an_alias_moved_without_its_commit_is_reconciled_by_the_next_write(
        migrated, tracking_uri, tiny_model, tmp_path):
    serving, artifacts = str(tmp_path / "serving"), str(tmp_path / "mlartifacts")
    for uid, expected in (("m1", None), ("m2", "m1")):
        publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version(uid),
                        helpers.run_record(uid, artifacts), expected_champion=expected)
    engine = store.engine_for(migrated)
    # A promotion of m1 died after moving MLflow's alias, before its commit.
    mlflow_sync.set_champion(tracking_uri, "tiny", 1)
    assert len(publish.disagreements(engine, tracking_uri)) == 1
    # The next push of that model name (not promoted) puts the alias back on m2.
    late = publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version("m3"),
                           helpers.run_record("m3", artifacts), expected_champion="m1")
    assert not late.champion
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == 2
    assert publish.disagreements(engine, tracking_uri) == []


def test_follow_champion_ends_on_the_last_committed_champion(migrated, tracking_uri, tiny_model,
                                                             tmp_path, monkeypatch):
    serving, artifacts = str(tmp_path / "serving"), str(tmp_path / "mlartifacts")
    for uid, expected in (("m1", None), ("m2", "m1")):
        publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version(uid),
                        helpers.run_record(uid, artifacts), expected_champion=expected)
    engine = store.engine_for(migrated)
    real_set_champion = mlflow_sync.set_champion
    moves = []

    def slow_set(uri, name, version):
        # Another promotion (to m1) commits while this alias move is in flight.
        if not moves:
            store.promote(engine, "m1")
        moves.append(version)
        real_set_champion(uri, name, version)
    monkeypatch.setattr(mlflow_sync, "set_champion", slow_set)
    assert publish.follow_champion(engine, tracking_uri, "tiny") == 1
    assert moves == [2, 1]
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == 1


def test_failure_after_the_mlflow_write_then_retry_gives_one_consistent_version(
        migrated, tracking_uri, tiny_model, tmp_path, monkeypatch):
    serving, artifacts = str(tmp_path / "serving"), str(tmp_path / "mlartifacts")
    real_attach = store.attach_mlflow

    def crash(*_args):
        raise ConnectionError("registry connection lost")
    monkeypatch.setattr(store, "attach_mlflow", crash)
    with pytest.raises(ConnectionError):
        publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version("m1"),
                        helpers.run_record("m1", artifacts))
    interrupted = store.get(store.engine_for(migrated), "m1")
    assert interrupted.mlflow_model_version is None and interrupted.status == "registered"
    assert mlflow_sync.versions_with_uid(tracking_uri, "tiny") == [(1, "m1")]

    monkeypatch.setattr(store, "attach_mlflow", real_attach)
    result = publish.publish(migrated, tracking_uri, serving, tiny_model,
                             helpers.new_version("m1"), helpers.run_record("m1", artifacts))
    assert (result.version, result.created, result.mlflow_version, result.champion) == \
        (1, False, 1, True)
    rows = store.list_versions(store.engine_for(migrated))
    assert [(r.model_uid, r.version, r.mlflow_model_version, r.status) for r in rows] == \
        [("m1", 1, 1, "champion")]
    assert mlflow_sync.versions_with_uid(tracking_uri, "tiny") == [(1, "m1")]
    runs = mlflow_sync.client(tracking_uri).search_runs(
        [mlflow_sync.client(tracking_uri).get_experiment_by_name("tiny-pipeline").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == rows[0].mlflow_run_id
    # Re-pushing the finished model adds nothing anywhere.
    publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version("m1"),
                    helpers.run_record("m1", artifacts))
    assert len(store.list_versions(store.engine_for(migrated))) == 1
    assert mlflow_sync.versions_with_uid(tracking_uri, "tiny") == [(1, "m1")]


def test_failure_while_logging_the_run_then_retry_finishes_that_run(
        migrated, tracking_uri, tiny_model, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    serving = str(tmp_path / "serving")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "report.json").write_text('{"blessed": true}')
    (tmp_path / "training.json").write_text('{"epochs": 1}')
    record = helpers.run_record("m1", str(tmp_path / "mlartifacts"))
    record.artifacts = {"evaluation": str(tmp_path / "evaluation"),
                        "training": str(tmp_path / "training.json")}
    real_log_artifacts = MlflowClient.log_artifacts

    def upload_fails(self, run_id, local_dir, artifact_path=None):
        raise ConnectionError("artifact store unreachable")
    # The run exists (create_run) and has its params/metrics, but no artifacts.
    monkeypatch.setattr(MlflowClient, "log_artifacts", upload_fails)
    with pytest.raises(store.RegistryError, match="ConnectionError: artifact store unreachable"):
        publish.publish(migrated, tracking_uri, serving, tiny_model, helpers.new_version("m1"),
                        record)
    mlflow_client = mlflow_sync.client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name("tiny-pipeline").experiment_id
    [half_logged] = mlflow_client.search_runs([experiment])
    assert half_logged.info.status == "RUNNING"
    assert mlflow_client.list_artifacts(half_logged.info.run_id) == []
    assert mlflow_sync.versions_with_uid(tracking_uri, "tiny") == []

    monkeypatch.setattr(MlflowClient, "log_artifacts", real_log_artifacts)
    result = publish.publish(migrated, tracking_uri, serving, tiny_model,
                             helpers.new_version("m1"), record)
    [run] = mlflow_client.search_runs([experiment])
    assert run.info.run_id == half_logged.info.run_id == result.mlflow_run_id
    assert run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "1"} and run.data.metrics == {"accuracy": 0.9}
    assert sorted(a.path for a in mlflow_client.list_artifacts(run.info.run_id)) == \
        ["evaluation", "model", "training"]
    assert [a.path for a in mlflow_client.list_artifacts(run.info.run_id, "evaluation")] == \
        ["evaluation/report.json"]
    assert mlflow_sync.versions_with_uid(tracking_uri, "tiny") == [(1, "m1")]
    assert mlflow_client.get_model_version("tiny", "1").run_id == run.info.run_id
    assert result.champion and store.get(store.engine_for(migrated), "m1").mlflow_model_version == 1


def test_concurrent_pushers_get_unique_gap_free_versions(migrated, tracking_uri, tiny_model,
                                                         tmp_path):
    workers, per_worker = 8, 25
    context = multiprocessing.get_context("spawn")
    jobs = [(w, per_worker, migrated, tracking_uri, str(tmp_path), tiny_model)
            for w in range(workers)]
    with context.Pool(workers) as pool:
        results = [pair for chunk in pool.map(helpers.push_many, jobs) for pair in chunk]

    total = workers * per_worker
    assert len({uid for uid, _ in results}) == total
    # The pushers really overlapped: versions interleave across workers.
    by_version = [uid.split("-")[1] for uid, _ in sorted(results, key=lambda pair: pair[1])]
    switches = sum(a != b for a, b in zip(by_version, by_version[1:]))
    assert switches > workers, f"pushes did not interleave ({switches} switches)"
    rows = store.list_versions(store.engine_for(migrated), model_name="tiny")
    assert sorted(r.version for r in rows) == list(range(1, total + 1))
    assert all(r.mlflow_model_version is not None for r in rows)
    assert sorted(uid for _, uid in mlflow_sync.versions_with_uid(tracking_uri, "tiny")) == \
        sorted(r.model_uid for r in rows)
    champions = [r for r in rows if r.status == "champion"]
    assert len(champions) == 1
    assert mlflow_sync.champion_version(tracking_uri, "tiny") == champions[0].mlflow_model_version
    assert len(list((tmp_path / "serving" / "tiny").iterdir())) == total


def test_mlflow_champion_loads_as_pyfunc_and_predicts_from_image_bytes(
        migrated, tracking_uri, tiny_model, tmp_path, monkeypatch):
    import io

    import mlflow
    import pandas as pd
    from PIL import Image

    publish.publish(migrated, tracking_uri, str(tmp_path / "serving"), tiny_model,
                    helpers.new_version("m1"), helpers.run_record("m1", str(tmp_path / "mla")))
    images = []
    for shade in (20, 240):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (shade,) * 3).save(buffer, "PNG")
        images.append(buffer.getvalue())
    monkeypatch.setenv(mlflow_sync.TRACKING_URI_ENV, tracking_uri)
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    predictions = model.predict(pd.DataFrame({"image": images}))
    assert list(predictions["class"]) == ["dark", "bright"]
    assert predictions["confidence"].between(0.5, 1.0).all()

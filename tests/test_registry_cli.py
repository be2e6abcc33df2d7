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
    # A row written before the policies existed: its model ignored EXIF and stretched.
    assert "8x8x3 uint8; resize bilinear (antialiased), aspect stretch, EXIF orientation " \
           "ignored" in shown.output
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
    head = store.head_revision()
    assert down.exit_code == 0 and f"schema revision {head} -> none" in down.output
    unmigrated = invoke("list")
    assert unmigrated.exit_code == 1 and "run `imgpipe registry migrate`" in unmigrated.output
    up = invoke("migrate")
    assert up.exit_code == 0 and f"schema revision none -> {head}" in up.output
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


UNREACHABLE_MLFLOW = "http://user:secret@127.0.0.1:1"


def _no_secret_no_traceback(result, secret="secret"):
    assert result.exit_code == 1, result.output
    assert secret not in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_mlflow_errors_are_one_masked_line(pushed, monkeypatch):
    monkeypatch.setenv(mlflow_sync.TRACKING_URI_ENV, UNREACHABLE_MLFLOW)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    migrated = invoke("migrate")
    assert migrated.exit_code == 1 and "Traceback" not in migrated.output
    assert "secret" not in migrated.output
    assert migrated.output.count("user:***@127.0.0.1:1") == 2   # the prefix and MLflow's text
    promoted = invoke("promote", "m3")
    _no_secret_no_traceback(promoted)
    assert "m3 is tiny's champion in the registry, but MLflow's alias" in promoted.output
    assert "imgpipe registry repair" in promoted.output
    rolled = invoke("rollback", "--model", "tiny")
    _no_secret_no_traceback(rolled)
    repaired = invoke("repair")
    _no_secret_no_traceback(repaired)
    listed = invoke("list")
    assert listed.exit_code == 0 and "secret" not in listed.output
    assert "note: champion aliases not checked, MLflow at http://user:***@" in listed.output


def test_pusher_failure_is_masked_without_the_chained_error(pushed, monkeypatch, tmp_path):
    from imgpipe.components.registry_pusher import executor
    from imgpipe.components.registry_pusher.settings import PushSettings
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = PushSettings(model_name="tiny", registry_url="", mlflow_tracking_uri="",
                            mlflow_experiment="e", mlflow_artifact_root="",
                            serving_root=str(tmp_path / "serving"))
    with pytest.raises(store.RegistryError) as failed:
        executor._publish(pushed["url"], UNREACHABLE_MLFLOW, settings,
                          str(pushed["tmp"] / "model"), helpers.new_version("m9"),
                          helpers.run_record("m9", str(tmp_path / "mla")), "m2")
    message = str(failed.value)
    assert "push of m9 failed" in message and "MlflowException" in message
    assert "secret" not in message and "user:***@127.0.0.1:1" in message
    assert failed.value.__suppress_context__ and failed.value.__cause__ is None


def test_unparseable_registry_url_names_the_setting(monkeypatch):
    monkeypatch.setenv(store.REGISTRY_URL_ENV, "postgresql://ml:hunter2@db:notaport/reg")
    for command in (["list"], ["migrate"], ["promote", "x"]):
        result = invoke(*command)
        _no_secret_no_traceback(result, "hunter2")
        assert store.REGISTRY_URL_ENV in result.output and "cannot be parsed" in result.output


def test_promote_and_rollback_refuse_a_missing_or_incomplete_saved_model(pushed):
    import shutil
    engine = store.engine_for(pushed["url"])
    m3, m1 = store.get(engine, "m3"), store.get(engine, "m1")
    shutil.rmtree(m3.artifact_path)
    refused = invoke("promote", "m3")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert f"no SavedModel at {m3.artifact_path} (saved_model.pb is missing)" in refused.output
    assert store.champion(engine, "tiny").model_uid == "m2"

    # A SavedModel without the bytes signature (servers and MLflow call it).
    import tensorflow as tf
    shutil.rmtree(m1.artifact_path)
    module = tf.Module()
    module.serve = tf.function(lambda x: {"y": x},
                               input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, m1.artifact_path, signatures={"serving_default": module.serve})
    rolled = invoke("rollback", "--model", "tiny")
    assert rolled.exit_code == 1, rolled.output
    assert f"the SavedModel at {m1.artifact_path} lacks the serving signature(s) serving_bytes" \
        in rolled.output
    assert store.champion(engine, "tiny").model_uid == "m2"
    assert mlflow_sync.champion_version(pushed["tracking"], "tiny") == \
        store.get(engine, "m2").mlflow_model_version


def test_list_flags_a_lagging_alias_and_repair_follows_the_registry(pushed):
    engine = store.engine_for(pushed["url"])
    champion = store.champion(engine, "tiny")
    # A crash between the registry's commit and MLflow's alias move.
    mlflow_sync.set_champion(pushed["tracking"], "tiny", 1)
    listed = invoke("list")
    assert listed.exit_code == 0
    assert (f"warning: MLflow disagrees with the registry: tiny: registry champion m2 (version 2) "
            f"is MLflow version {champion.mlflow_model_version}, but tiny@champion -> version 1"
            ) in listed.output
    assert "imgpipe registry repair" in listed.output
    repaired = invoke("repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"tiny: tiny@champion moved to version {champion.mlflow_model_version}" in repaired.output
    assert "other: other@champion -> version 1, already in agreement" in repaired.output
    assert mlflow_sync.champion_version(pushed["tracking"], "tiny") == champion.mlflow_model_version
    assert "warning" not in invoke("list").output


def test_a_served_root_moved_elsewhere_still_promotes(pushed, tmp_path):
    import shutil
    engine = store.engine_for(pushed["url"])
    moved = tmp_path / "restored-serving"
    shutil.move(str(tmp_path / "serving"), moved)   # a backup restored at another place
    refused = invoke("promote", "m3")
    assert refused.exit_code == 1 and "no SavedModel at" in refused.output
    promoted = invoke("promote", "m3", "--set", f"registry.serving_root={moved}")
    assert promoted.exit_code == 0, promoted.output
    assert store.champion(engine, "tiny").model_uid == "m3"
    row = store.get(engine, "m3")
    assert publish.artifact_dir(row, str(moved)) == str(moved / "tiny" / "3")


def test_a_restored_serving_root_is_where_the_resolver_and_the_server_find_the_champion(
        pushed, tmp_path):
    import shutil

    from imgpipe.components.champion_resolver import resolve
    from imgpipe.serving import model as served
    moved = tmp_path / "restored-serving"
    shutil.move(str(tmp_path / "serving"), moved)
    record = resolve.champion_record(pushed["url"], "tiny", False, str(moved))
    assert record["model_uid"] == "m2" and record["artifact_path"] == str(moved / "tiny" / "2")
    row = served.resolve(pushed["url"], "tiny")
    with pytest.raises(store.RegistryError, match="cannot load its SavedModel"):
        served.load(row)                              # the recorded path is gone
    assert served.load(row, str(moved)).path == str(moved / "tiny" / "2")


def test_an_unreachable_mlflow_blocks_no_other_writer(pushed, tmp_path):
    """`promote` against an MLflow that keeps retrying: its registry
    transaction is over before the first MLflow call, so a push's write goes
    through at once instead of queueing behind the retries."""
    import os
    import subprocess
    import sys
    import time
    environment = {**os.environ, store.REGISTRY_URL_ENV: pushed["url"],
                   mlflow_sync.TRACKING_URI_ENV: UNREACHABLE_MLFLOW,
                   "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}
    promoting = subprocess.Popen(
        [sys.executable, "-c", "from imgpipe.pipeline.cli import main; main()",
         "registry", "promote", "m3"], env=environment, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    engine = store.engine_for(pushed["url"])
    try:
        deadline = time.monotonic() + 90
        while store.champion(engine, "tiny").model_uid != "m3" and time.monotonic() < deadline:
            assert promoting.poll() is None, promoting.stdout.read().decode()
            time.sleep(0.2)
        assert store.champion(engine, "tiny").model_uid == "m3", "promote never committed"
        started = time.monotonic()
        row, _ = store.register(engine, helpers.new_version("m4"), lambda v: f"/serve/{v}")
        assert time.monotonic() - started < 5 and row.version == 4
        assert promoting.poll() is None, "MLflow's retries ended before the write: no overlap"
    finally:
        promoting.kill()
        output = promoting.communicate()[0].decode()
    assert "secret" not in output


def test_champion_resolver_errors_are_masked():
    from imgpipe.components.champion_resolver import resolve
    url = "postgresql+psycopg2://ml:hunter2@127.0.0.1:9/reg"
    with pytest.raises(store.RegistryError) as failed:
        resolve.champion_record(url, "tiny", auto_migrate=True)
    assert "hunter2" not in str(failed.value) and "ml:***@127.0.0.1:9" in str(failed.value)
    assert "OperationalError" in str(failed.value) and failed.value.__suppress_context__

"""`imgpipe watch`: new spans and monitor alerts trigger one run at a time, with a cooldown.

The CLI tests submit to a STAND-IN Kubeflow API server (kfp_standin.py: no
cluster can run here); the alert comes from the real monitor checks over a real
registry and prediction log."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

import registry_helpers as helpers
from conftest import REPO
from imgpipe.pipeline import cli, watch
from imgpipe.registry import store
from imgpipe.registry.models import PredictionLog
from kfp_standin import KfpStandIn

CONFIG = REPO / "configs" / "quickstart.toml"


def recording_watcher(tmp_path, spans, alerts, cooldown=3600.0):
    runs = []

    def run(span, reason):
        runs.append((span, reason))
        return 0
    return watch.Watcher(tmp_path, cooldown, lambda: spans[-1] if spans else None,
                         lambda: list(alerts), run, echo=lambda line: None), runs


def events(folder):
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def test_a_new_span_runs_once_and_a_trigger_inside_the_cooldown_is_skipped(tmp_path):
    spans, alerts = [1], []
    watcher, runs = recording_watcher(tmp_path, spans, alerts)
    start = dt.datetime(2026, 12, 3, 3, 0, tzinfo=dt.timezone.utc)
    assert watcher.poll(start) is None and runs == []           # span 1 was there: the baseline
    spans.append(2)
    assert watcher.poll(start + dt.timedelta(minutes=5)) == "run"
    assert watcher.poll(start + dt.timedelta(minutes=10)) is None    # span 2 is seen now
    assert runs == [(2, "new data: span 2 (last seen 1)")]
    alerts.append("confidence: mean confidence 0.41")
    assert watcher.poll(start + dt.timedelta(minutes=20)) == "skipped"
    assert watcher.poll(start + dt.timedelta(minutes=70)) == "run"   # the cooldown is over
    assert runs[-1] == (2, "monitor alert: confidence: mean confidence 0.41")
    logged = [(e["event"], e.get("cooldown_left_s")) for e in events(tmp_path)]
    assert logged == [("watching", None), ("trigger", None), ("run finished", None),
                      ("skipped", 2700), ("trigger", None), ("run finished", None)]
    # The state survives a restart: a new watcher does not re-run span 2.
    alerts.clear()
    again, more = recording_watcher(tmp_path, spans, alerts)
    assert again.poll(start + dt.timedelta(hours=3)) is None and more == []


def test_spans_are_read_from_the_pattern(tmp_path):
    for span in (3, 10, 7):
        (tmp_path / f"span-{span}" / "cat").mkdir(parents=True)
    (tmp_path / "span-x").mkdir()
    assert watch.spans(str(tmp_path / "span-{SPAN}")) == [3, 7, 10]
    assert watch.spans(str(tmp_path / "span-{SPAN}" / "")) == [3, 7, 10]
    assert watch.spans(str(tmp_path / "plain")) == []


def test_one_watcher_per_output_root(tmp_path):
    with watch.Lock(tmp_path):
        with pytest.raises(watch.WatchError, match="another imgpipe watch .* one at a time"):
            with watch.Lock(tmp_path):
                pass
    with watch.Lock(tmp_path):   # released
        pass


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    result = CliRunner().invoke(cli.main, ["compile", "--output", str(out), "--image", "imgpipe:test",
                                           "--pipeline-root", "gs://acme-ml/imgpipe"])
    assert result.exit_code == 0, result.output
    return out


def watch_once(tmp_path, package, server, *sets):
    return CliRunner().invoke(cli.main, [
        "watch", "--once", "--target", "kubeflow", "--package", str(package), "--host", server.url,
        "--config", str(CONFIG), "--set", f"pipeline.output_root='{tmp_path / 'out'}'",
        "--set", f"data.source='{tmp_path / 'drops' / 'span-{SPAN}'}'", *sets])


def test_watch_submits_one_kubeflow_run_per_new_span(tmp_path, package):
    (tmp_path / "drops" / "span-1").mkdir(parents=True)
    with KfpStandIn() as server:
        first = watch_once(tmp_path, package, server)
        assert first.exit_code == 0, first.output
        assert server.runs == []
        (tmp_path / "drops" / "span-2").mkdir()
        second = watch_once(tmp_path, package, server)
        assert second.exit_code == 0, second.output
        [run] = server.runs
        (tmp_path / "drops" / "span-3").mkdir()
        third = watch_once(tmp_path, package, server)
        assert len(server.runs) == 1
    assert run["display_name"] == "imgpipe watch: new data: span 2 (last seen 1)"
    assert "trigger; reason: new data: span 2 (last seen 1)" in second.stderr
    assert f"submitted run {run['run_id']}" in second.stderr
    assert "skipped; reason: new data: span 3 (last seen 2); cooldown_left_s:" in third.stderr
    assert [e["event"] for e in events(tmp_path / "out" / "watch")] == [
        "started", "watching", "started", "trigger", "run finished", "started", "skipped"]


def test_a_monitor_alert_triggers_a_run(tmp_path, package):
    # A champion whose answers have lost their confidence: the monitor's 0.7 floor alerts.
    registry, log = f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'log.db'}"
    store.migrate(registry)
    engine = store.engine_for(registry)
    store.register(engine, helpers.new_version("t1", model_name="shapes-cnn"), lambda v: "/serve")
    store.promote(engine, "t1")
    store.migrate(log)
    with store.engine_for(log).begin() as connection:
        connection.execute(insert(PredictionLog), [
            {"created_at": dt.datetime.now(dt.timezone.utc), "model_name": "shapes-cnn",
             "model_uid": "t1", "model_version": 1, "input_hash": "h" * 64,
             "predicted_class": "dark", "class_id": 0, "confidence": 0.45, "latency_ms": 1.0,
             "source": "http", "prediction_id": str(uuid.uuid4())} for _ in range(30)])
    (tmp_path / "drops" / "span-1").mkdir(parents=True)
    with KfpStandIn() as server:
        result = watch_once(tmp_path, package, server, "--set", f"registry.url='{registry}'",
                            "--set", f"serving.log_url='{log}'")
        assert result.exit_code == 0, result.output
        [run] = server.runs
    assert "monitor alert: confidence: mean confidence 0.450 over 30 predictions" in run["display_name"]

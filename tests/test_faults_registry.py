"""Fault injection on the registry: processes killed mid-write, MLflow gone.

Real `imgpipe registry` processes against a real SQLite registry and MLflow
store, killed with SIGKILL at seeded random moments. After each kill the
next command must find exactly one champion, and once `registry repair` has
run (or the next write), MLflow's alias agrees with the SQL registry.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import registry_helpers as helpers
from imgpipe.registry import mlflow_sync, publish, store

pytestmark = pytest.mark.faults

IMGPIPE = str(Path(sys.executable).parent / "imgpipe")


@pytest.fixture
def registry(tmp_path):
    """Four pushed versions of `tiny` (v2 champion) in a SQLite registry and MLflow."""
    url, tracking = f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = str(helpers.write_tiny_saved_model(tmp_path / "model"))
    store.migrate(url)
    mlflow_sync.ensure_store(tracking)
    for uid, accuracy, expected in (("m1", 0.80, None), ("m2", 0.90, "m1"), ("m3", 0.85, "m1"),
                                    ("m4", 0.86, "m1")):
        publish.publish(url, tracking, str(tmp_path / "serving"), model,
                        helpers.new_version(uid, accuracy=accuracy),
                        helpers.run_record(uid, str(tmp_path / "mla")), expected_champion=expected)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("IMGPIPE_", "MLFLOW_"))},
           store.REGISTRY_URL_ENV: url, mlflow_sync.TRACKING_URI_ENV: tracking}
    return {"url": url, "tracking": tracking, "env": env, "tmp": tmp_path}


def _cli(registry, *args, timeout=120):
    return subprocess.run([IMGPIPE, "registry", *args, "--set",
                           f"registry.serving_root='{registry['tmp'] / 'serving'}'"],
                          env=registry["env"], capture_output=True, text=True, timeout=timeout)


def _killed_at(registry, delay: float, *args) -> bool:
    """Starts `imgpipe registry ARGS`, SIGKILLs it after `delay` s; False if it ended first."""
    process = subprocess.Popen([IMGPIPE, "registry", *args], env=registry["env"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def _assert_one_champion_and_agreement(registry):
    engine = store.engine_for(registry["url"])
    champions = [row for row in store.list_versions(engine, "tiny") if row.status == "champion"]
    assert len(champions) == 1, [(row.model_uid, row.status) for row in champions]
    assert mlflow_sync.champion_version(registry["tracking"], "tiny") == \
        champions[0].mlflow_model_version
    assert publish.disagreements(engine, registry["tracking"]) == []


def test_kill_9_of_promote_and_rollback_at_random_points_leaves_one_champion(registry):
    rng = random.Random(20261202)
    # Kill points spread over a whole command (start-up, the SQL write, MLflow's
    # alias move), measured on this machine rather than guessed.
    started = time.monotonic()
    assert _cli(registry, "promote", "m2").returncode == 0
    duration = time.monotonic() - started
    commands = [("promote", "m3"), ("rollback", "--model", "tiny"), ("promote", "m4"),
                ("promote", "m1")] * 3
    killed = 0
    for command in commands:
        killed += _killed_at(registry, rng.uniform(0.5, 1.1) * duration, *command)
        # The next command sees one champion whatever the moment of the kill ...
        engine = store.engine_for(registry["url"])
        assert len([r for r in store.list_versions(engine, "tiny") if r.status == "champion"]) == 1
        # ... and after repair MLflow agrees with the registry.
        repaired = _cli(registry, "repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        _assert_one_champion_and_agreement(registry)
    assert killed >= 3, "too few commands were killed mid-way to say anything"


def test_the_next_write_after_a_killed_promote_repairs_the_alias(registry):
    """A promote killed between the SQL commit and MLflow's alias move leaves the
    alias behind; `list` says so and the next write (a push) realigns it."""
    engine = store.engine_for(registry["url"])
    store.promote(engine, "m3")                      # the commit, without the alias move
    listed = _cli(registry, "list")
    assert listed.returncode == 0
    assert "MLflow disagrees with the registry" in listed.stdout + listed.stderr
    model = str(registry["tmp"] / "model")
    publish.publish(registry["url"], registry["tracking"], str(registry["tmp"] / "serving"), model,
                    helpers.new_version("m5", accuracy=0.7),
                    helpers.run_record("m5", str(registry["tmp"] / "mla")), promote=False)
    _assert_one_champion_and_agreement(registry)
    assert store.champion(engine, "tiny").model_uid == "m3"


def test_promote_with_mlflow_unreachable_moves_the_registry_and_says_how_to_repair(registry):
    unreachable = {**registry["env"], mlflow_sync.TRACKING_URI_ENV: "http://user:secret@127.0.0.1:1",
                   "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    started = time.monotonic()
    result = subprocess.run([IMGPIPE, "registry", "promote", "m3"], env=unreachable,
                            capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output and "secret" not in output
    assert "imgpipe registry repair" in output
    engine = store.engine_for(registry["url"])
    assert store.champion(engine, "tiny").model_uid == "m3"   # the source of truth moved
    repaired = _cli(registry, "repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    _assert_one_champion_and_agreement(registry)


_PUSH = """
import sys
sys.path.insert(0, sys.argv[1])
import imgpipe  # noqa: F401
import registry_helpers as helpers
from imgpipe.registry import publish
url, tracking, root, model, uid = sys.argv[2:7]
publish.publish(url, tracking, f"{root}/serving", model, helpers.new_version(uid, accuracy=0.95),
                helpers.run_record(uid, f"{root}/mla"), expected_champion="m2")
"""


def _push_args(registry, uid):
    return [sys.executable, "-c", _PUSH, str(Path(__file__).parent), registry["url"],
            registry["tracking"], str(registry["tmp"]), str(registry["tmp"] / "model"), uid]


def test_kill_9_of_a_push_at_random_points_then_its_retry_completes_it(registry):
    """A push (the pusher's protocol in a process of its own) killed anywhere: its
    retry finishes the same version once, a complete serving copy, one champion,
    and MLflow agreeing with the registry."""
    rng = random.Random(7)
    started = time.monotonic()
    subprocess.run(_push_args(registry, "timing"), env=registry["env"], check=True,
                   capture_output=True)
    duration = time.monotonic() - started
    engine = store.engine_for(registry["url"])
    store.promote(engine, "m2")
    publish.follow_champion(engine, registry["tracking"], "tiny")
    killed = 0
    for attempt in range(4):
        uid = f"k{attempt}"
        process = subprocess.Popen(_push_args(registry, uid), env=registry["env"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        retried = subprocess.run(_push_args(registry, uid), env=registry["env"],
                                 capture_output=True, text=True)
        assert retried.returncode == 0, retried.stderr[-2000:]
        rows = [row for row in store.list_versions(engine, "tiny") if row.model_uid == uid]
        assert len(rows) == 1 and rows[0].mlflow_model_version is not None
        assert (Path(rows[0].artifact_path) / "saved_model.pb").is_file()
        assert mlflow_sync.find_version(registry["tracking"], "tiny", uid) is not None
        _assert_one_champion_and_agreement(registry)
        store.promote(engine, "m2")                  # the next push compares against m2 again
        publish.follow_champion(engine, registry["tracking"], "tiny")
    assert killed >= 2, "too few pushes were killed mid-way to say anything"


def test_a_push_with_mlflow_unreachable_fails_masked_and_its_retry_completes_it(registry):
    unreachable = {**registry["env"], mlflow_sync.TRACKING_URI_ENV: "http://user:secret@127.0.0.1:1",
                   "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    args = _push_args(registry, "u1")
    args[args.index(registry["tracking"])] = unreachable[mlflow_sync.TRACKING_URI_ENV]
    failed = subprocess.run(args, env=unreachable, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "secret" not in failed.stdout + failed.stderr
    engine = store.engine_for(registry["url"])
    [row] = [row for row in store.list_versions(engine, "tiny") if row.model_uid == "u1"]
    assert row.status != "champion" and row.mlflow_model_version is None   # registered, not served
    retried = subprocess.run(_push_args(registry, "u1"), env=registry["env"],
                             capture_output=True, text=True, timeout=300)
    assert retried.returncode == 0, retried.stderr[-2000:]
    row = store.get(engine, "u1")
    assert row.mlflow_model_version is not None and row.status == "champion"
    _assert_one_champion_and_agreement(registry)


"""A challenger beside the champion: split assignment, the shadow off the response path,
and labels joined to both (real SavedModels, registry, prediction log; in-process HTTP)."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from test_serving import b64, eventually, png, predict

import registry_helpers as helpers
from imgpipe.registry import mlflow_sync, publish, store
from imgpipe.serving import challenger, predlog
from imgpipe.serving import model as served


def test_assignment_is_stable_per_key_and_holds_its_share():
    keys = [f"client-{i}" for i in range(4000)]
    first = [challenger.assigned(key, 0.3) for key in keys]
    assert first == [challenger.assigned(key, 0.3) for key in keys]
    share = sum(first) / len(first)
    assert abs(share - 0.3) < 3 * (0.3 * 0.7 / len(keys)) ** 0.5      # three standard errors
    assert not any(challenger.assigned(key, 0.0) for key in keys)
    assert all(challenger.assigned(key, 1.0) for key in keys)


def _two_versions(tmp_path, mode: str, share: float, published=None, **settings):
    """Champion t1 (bright above mean 127) and challenger t2 (bright above 51): an
    image of shade 100 tells them apart. `published(registry_url)` runs before
    the server looks them up."""
    from imgpipe.serving import app as serving_app
    url, tracking = f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.migrate(url)
    mlflow_sync.ensure_store(tracking)
    for uid, bias, promote in (("t1", 0.0, True), ("t2", 0.3, False)):
        model_dir = str(helpers.write_tiny_saved_model(tmp_path / uid, bias=bias))
        publish.publish(url, tracking, str(tmp_path / "serving"), model_dir, helpers.new_version(uid),
                        helpers.run_record(uid, str(tmp_path / "mla")), promote=promote)
    if published:
        published(url)
    holder = serving_app.ModelHolder(lambda: served.resolve(url, "tiny"), served.load)
    challengers = challenger.ChallengerHolder(lambda: challenger.resolve(url, "tiny", "newest"),
                                              served.load, lambda: holder.current.uid)
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    logger = predlog.PredictionLogger(log_url, str(tmp_path / "s"), 0.0)
    app_settings = serving_app.ServiceSettings(model_name="tiny", max_batch=8, reload_seconds=0.2,
                                               limits=served.Limits(64), challenger_mode=mode,
                                               challenger_share=share, **settings)
    return serving_app.create_app(app_settings, holder, logger, challengers=challengers), log_url


def test_split_answers_each_client_with_one_version_and_names_it(tmp_path):
    from fastapi.testclient import TestClient
    app, log_url = _two_versions(tmp_path, "split", 0.5)
    image = {"instances": [b64(png(100))]}
    with TestClient(app) as client:
        answers = {}
        for i in range(200):
            body = client.post("/v1/models/tiny:predict", json=image,
                               headers={"X-Client-Key": f"client-{i}"}).json()
            answers[f"client-{i}"] = (body["model_version"], body["variant"],
                                      body["predictions"][0]["class"])
        for key in ("client-3", "client-4", "client-150"):
            again = client.post("/v1/models/tiny:predict", json=image,
                                headers={"X-Client-Key": key}).json()
            assert (again["model_version"], again["variant"]) == answers[key][:2]
        assert client.get("/healthz").json()["challenger"]["model_version"] == 2
    assert {value for value in answers.values()} == {("1", "champion", "dark"),
                                                    ("2", "challenger", "bright")}
    share = sum(variant == "challenger" for _, variant, _ in answers.values()) / len(answers)
    assert abs(share - 0.5) < 3 * (0.25 / len(answers)) ** 0.5
    logged = predlog.read(log_url, "tiny", dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    assert sorted({(row.model_version, row.variant) for row in logged}) == [(1, "champion"),
                                                                          (2, "challenger")]


@pytest.mark.parametrize("trouble", ["slow", "failing"])
def test_a_slow_or_failing_shadow_never_reaches_the_client(tmp_path, monkeypatch, trouble):
    from fastapi.testclient import TestClient
    app, log_url = _two_versions(tmp_path, "shadow", 1.0)
    release = threading.Event()
    with TestClient(app) as client:
        service = app.state.service
        rival = service.challengers.current
        score = rival.predict_each

        def troubled(payloads, top_k):
            if trouble == "failing":
                raise RuntimeError("the challenger exploded")
            release.wait(60)          # held until every client has its answer
            return score(payloads, top_k)

        monkeypatch.setattr(rival, "predict_each", troubled)
        answers = [predict(client, {"instances": [b64(png(100))]}) for _ in range(80)]
        assert all(a.status_code == 200 and a.json()["variant"] == "champion" for a in answers)
        assert all(a.json()["predictions"][0]["class"] == "dark" for a in answers)
        shadow = service.shadow
        if trouble == "slow":
            assert shadow.skipped >= 80 - challenger.SHADOW_QUEUE - 1   # queue full: skipped
            release.set()
            assert eventually(lambda: shadow.scored == 80 - shadow.skipped)
        else:
            assert eventually(lambda: shadow.failed == 80)
        metrics = client.get("/metrics").text
        assert f'imgpipe_shadow_requests_total{{outcome="{"scored" if trouble == "slow" else "failed"}"}}' \
            in metrics
        ids = [a.json()["predictions"][0]["prediction_id"] for a in answers]
    # Stopping the app flushed the log: the shadow's answers sit beside the champion's.
    logged = predlog.read(log_url, "tiny", dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    shadows = [row for row in logged if row.variant == "challenger"]
    if trouble == "failing":
        assert shadows == []
    else:
        assert shadows and all(row.shadow_of in ids and row.predicted_class == "bright"
                               and row.source == "shadow" for row in shadows)


def test_a_challenger_that_cannot_load_leaves_the_champion_serving_and_is_retried(tmp_path):
    """Its SavedModel unreadable: the server starts, the champion answers every
    request, /healthz names the challenger's failure; once readable again, the
    next reload serves it."""
    import os

    from fastapi.testclient import TestClient
    moved = {}

    def unreadable(url):
        row = store.version_of(store.engine_for(url), "tiny", 2)
        moved["path"] = os.path.join(row.artifact_path, "saved_model.pb")
        os.rename(moved["path"], moved["path"] + ".away")

    app, _ = _two_versions(tmp_path, "split", 1.0, published=unreadable)
    saved_model = moved["path"]
    with TestClient(app) as client:
        answers = [predict(client, {"instances": [b64(png(100))]}) for _ in range(5)]
        assert all(a.status_code == 200 and a.json()["variant"] == "champion" for a in answers)
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and "challenger" not in health
        assert "challenger tiny version 2" in health["challenger_error"]
        assert "could not be loaded" in health["challenger_error"]
        os.rename(saved_model + ".away", saved_model)
        assert eventually(lambda: client.get("/healthz").json().get("challenger", {})
                          .get("model_version") == 2)
        assert "challenger_error" not in client.get("/healthz").json()
        assert predict(client, {"instances": [b64(png(100))]}).json()["variant"] == "challenger"


def test_promotion_and_rollback_move_the_split_within_the_reload_interval(tmp_path):
    """A 100% split to the challenger t2; t2 promoted: it answers as champion and
    there is no challenger left; rolled back: t1 answers everything again, and
    the rolled-back t2 never comes back as "newest"."""
    from fastapi.testclient import TestClient
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    app, _ = _two_versions(tmp_path, "split", 1.0)
    engine = store.engine_for(url)

    def answered(client):
        body = predict(client, {"instances": [b64(png(100))]}).json()
        return body["model_version"], body["variant"], body["predictions"][0]["class"]

    with TestClient(app) as client:
        assert answered(client) == ("2", "challenger", "bright")
        store.promote(engine, store.version_of(engine, "tiny", 2).model_uid)
        assert eventually(lambda: answered(client) == ("2", "champion", "bright"))
        assert "challenger" not in client.get("/healthz").json()
        store.rollback(engine, "tiny")
        assert eventually(lambda: answered(client) == ("1", "champion", "dark"))
        assert all(answered(client) == ("1", "champion", "dark") for _ in range(20))
        assert "challenger" not in client.get("/healthz").json()

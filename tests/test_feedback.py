"""Ground truth: labels for logged predictions, by HTTP and by CSV import, all or nothing."""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

import registry_helpers as helpers
from imgpipe.pipeline.cli import main
from imgpipe.registry import store
from imgpipe.registry.models import Feedback, PredictionLog
from imgpipe.serving import feedback

CLASSES = {"m1": ["cat", "dog"], "m2": ["cat", "dog", "bird"]}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_url(request, tmp_path) -> str:
    url = (f"sqlite:///{tmp_path / 'log.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store.migrate(url)
    return url


def logged(url: str, count: int, uid: str = "m1") -> list:
    """`count` prediction_log rows answered by `uid`; their prediction ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with store.engine_for(url).begin() as connection:
        connection.execute(insert(PredictionLog), [
            {"created_at": dt.datetime.now(dt.timezone.utc), "model_name": "pets", "model_uid": uid,
             "model_version": 1, "input_hash": "h" * 64, "predicted_class": "cat", "class_id": 0,
             "confidence": 0.9, "latency_ms": 1.0, "source": "http", "prediction_id": pid,
             "variant": "champion"} for pid in ids])
    return ids


def stored(url: str) -> dict:
    with store.engine_for(url).connect() as connection:
        return {pid: label for pid, label in
                connection.execute(select(Feedback.prediction_id, Feedback.label))}


def labels(pairs) -> list:
    return [feedback.Label(pid, label, f"feedback[{i}]") for i, (pid, label) in enumerate(pairs)]


def test_a_body_is_one_label_or_a_list_and_anything_else_is_refused_by_what_it_lacks():
    one = feedback.parse_body(b'{"prediction_id": "a", "label": "cat"}')
    assert one == [feedback.Label("a", "cat", "feedback")]
    many = feedback.parse_body(json.dumps({"feedback": [{"prediction_id": "a", "label": "cat"},
                                                        {"prediction_id": "b", "label": "dog"}]}).encode())
    assert [item.where for item in many] == ["feedback[0]", "feedback[1]"]
    for body, message in [(b"nope", "not JSON"), (b'{"feedback": []}', "non-empty list"),
                          (b'{"prediction_id": "a"}', "feedback: expected"),
                          (b'{"feedback": [{"prediction_id": "a", "label": 3}]}', "feedback[0]: "
                           "prediction_id and label must be strings")]:
        with pytest.raises(feedback.FeedbackRefused, match=re.escape(message)) as refused:
            feedback.parse_body(body)
        assert refused.value.status == 400


def test_labels_are_joined_by_prediction_id_and_a_bad_batch_writes_nothing(log_url):
    ids = logged(log_url, 3) + logged(log_url, 1, uid="m2")
    names = CLASSES.get
    assert feedback.record(log_url, labels([(ids[0], "dog"), (ids[3], "bird")]), names, "http") == 2
    assert stored(log_url) == {ids[0]: "dog", ids[3]: "bird"}
    bad = labels([(ids[1], "cat"), ("no-such-id", "cat"), (ids[2], "bird"), (ids[0], "cat"),
                  (ids[1], "dog")])
    with pytest.raises(feedback.FeedbackRefused) as refused:
        feedback.record(log_url, bad, names, "http")
    assert refused.value.status == 422
    assert refused.value.reasons == [
        "feedback[1]: unknown prediction_id 'no-such-id'",
        "feedback[2]: 'bird' is not a class of the model that answered (m1: cat, dog)",
        f"feedback[3]: prediction {ids[0]} already has a label",
        f"feedback[4]: prediction {ids[1]} is labelled twice in this batch"]
    assert stored(log_url) == {ids[0]: "dog", ids[3]: "bird"}     # ids[1]'s good label neither
    with store.engine_for(log_url).connect() as connection:
        class_id = connection.scalar(select(Feedback.class_id).where(Feedback.prediction_id == ids[3]))
    assert class_id == 2


def test_a_concurrent_burst_loses_nothing_and_labels_each_prediction_once(log_url):
    ids = logged(log_url, 400)
    outcomes, lock = [], threading.Lock()

    def send(part):
        try:
            result = feedback.record(log_url, labels([(pid, "dog") for pid in part]), CLASSES.get,
                                     "http")
        except feedback.FeedbackRefused as refused:
            result = refused.status
        with lock:
            outcomes.append(result)

    # Eight writers of 50 distinct labels each, and four racing to label one same prediction.
    parts = [ids[i:i + 50] for i in range(0, 400, 50)]
    threads = [threading.Thread(target=send, args=(part,)) for part in parts]
    taken = logged(log_url, 1)
    threads += [threading.Thread(target=send, args=(taken,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(stored(log_url)) == 401
    assert outcomes.count(50) == 8 and outcomes.count(1) == 1
    # The others: "already has a label" (422), or the unique key's refusal (409)
    # when their check ran before the winner committed.
    assert len(outcomes) == 12 and set(outcomes) - {1, 50} <= {409, 422}


def test_import_reads_a_csv_and_names_each_refused_line(tmp_path):
    registry, log = f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'log.db'}"
    store.migrate(registry)
    store.register(store.engine_for(registry), helpers.new_version("t1"), lambda v: f"/serve/{v}")
    # (its classes: dark, bright)
    store.migrate(log)
    ids = logged(log, 3, uid="t1")
    sets = ["--set", f"registry.url='{registry}'", "--set", f"serving.log_url='{log}'"]
    bad = tmp_path / "late.csv"
    bad.write_text(f"prediction_id,label,note\n{ids[0]},dark,ok\n{ids[1]},grey,?\nzzz,dark,?\n")
    result = CliRunner().invoke(main, ["feedback", "import", str(bad), *sets])
    assert result.exit_code == 1, result.output
    assert f"{bad} line 3: 'grey' is not a class of the model that answered (t1: dark, bright)" \
        in result.stderr
    assert f"{bad} line 4: unknown prediction_id 'zzz'" in result.stderr
    assert "2 of the labels" in result.stderr and "nothing was recorded" in result.stderr
    assert "Traceback" not in result.output and stored(log) == {}
    good = tmp_path / "good.csv"
    good.write_text(f"prediction_id,label\n{ids[0]},dark\n{ids[1]},bright\n")
    result = CliRunner().invoke(main, ["feedback", "import", str(good), *sets])
    assert result.exit_code == 0, result.output
    assert "recorded 2 labels" in result.stdout and stored(log) == {ids[0]: "dark", ids[1]: "bright"}
    headless = tmp_path / "headless.csv"
    headless.write_text("id,class\n1,dark\n")
    result = CliRunner().invoke(main, ["feedback", "import", str(headless), *sets])
    assert result.exit_code == 1 and "the header has no label or prediction_id column" in result.stderr


def test_the_label_count_is_limited_per_batch(monkeypatch):
    monkeypatch.setattr(feedback, "MAX_LABELS", 2)
    body = json.dumps({"feedback": [{"prediction_id": str(i), "label": "cat"} for i in range(3)]})
    with pytest.raises(feedback.FeedbackRefused, match="3 labels in one batch; the limit is 2") as refused:
        feedback.parse_body(body.encode())
    assert refused.value.status == 413


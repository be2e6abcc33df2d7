"""Ground truth: the true class of logged predictions, joined by prediction id.

Clients send labels back (`POST /v1/feedback`), or they arrive later in bulk
(`imgpipe feedback import labels.csv`). A batch is written whole or not at
all: an unknown prediction id, a label that is not one of the answering
model's classes, or a prediction labelled twice (in the batch, before, or by
a concurrent writer: the table's unique key) refuses the batch with a reason
per label, and nothing is written.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from imgpipe.registry import store
from imgpipe.registry.models import Feedback, PredictionLog

MAX_LABELS = 10_000          # per request or import; larger files go in parts
_IN_CLAUSE = 500             # ids per SELECT ... IN (...)


@dataclasses.dataclass(frozen=True)
class Label:
    prediction_id: str
    label: str
    where: str               # how the sender finds it: "feedback[3]", "labels.csv line 5"


class FeedbackRefused(ValueError):
    """Nothing was written; `reasons` names each refused label."""

    def __init__(self, status: int, reasons: Sequence[str]):
        self.status, self.reasons = status, list(reasons)
        shown = "; ".join(self.reasons[:10])
        more = f" (and {len(self.reasons) - 10} more)" if len(self.reasons) > 10 else ""
        super().__init__(f"nothing recorded: {shown}{more}")


def _label(item, where: str) -> Label:
    if not isinstance(item, dict) or set(item) != {"prediction_id", "label"}:
        raise FeedbackRefused(400, [f"{where}: expected {{\"prediction_id\": ..., \"label\": ...}}"])
    prediction_id, label = item["prediction_id"], item["label"]
    if not isinstance(prediction_id, str) or not isinstance(label, str):
        raise FeedbackRefused(400, [f"{where}: prediction_id and label must be strings (the "
                                    "label is a class name)"])
    return Label(prediction_id.strip(), label.strip(), where)


def parse_body(body: bytes) -> List[Label]:
    """{"prediction_id", "label"} or {"feedback": [those, ...]}."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FeedbackRefused(400, ["the body is not JSON"]) from None
    if isinstance(document, dict) and "feedback" in document:
        items = document["feedback"]
        if not isinstance(items, list) or not items or set(document) != {"feedback"}:
            raise FeedbackRefused(400, ['expected {"feedback": [{"prediction_id": ..., '
                                        '"label": ...}, ...]}, a non-empty list'])
        return _limited([_label(item, f"feedback[{i}]") for i, item in enumerate(items)])
    return [_label(document, "feedback")]


def read_csv(path: str) -> List[Label]:
    """A CSV file with a header naming `prediction_id` and `label` (other columns ignored)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"prediction_id", "label"} - set(reader.fieldnames or ())
        if missing:
            raise FeedbackRefused(400, [f"{path}: the header has no {' or '.join(sorted(missing))} "
                                        f"column (found: {', '.join(reader.fieldnames or []) or 'none'})"])
        labels = [Label((row["prediction_id"] or "").strip(), (row["label"] or "").strip(),
                        f"{path} line {reader.line_num}") for row in reader]
    if not labels:
        raise FeedbackRefused(400, [f"{path}: no labels below the header"])
    return _limited(labels)


def _limited(labels: List[Label]) -> List[Label]:
    if len(labels) > MAX_LABELS:
        raise FeedbackRefused(413, [f"{len(labels):,} labels in one batch; the limit is "
                                    f"{MAX_LABELS:,} (send them in parts)"])
    return labels


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN_CLAUSE):
        yield values[start:start + _IN_CLAUSE]


def problems(labels: Sequence[Label], answered_by: Dict[str, str], labelled: set,
             class_names_of: Callable[[str], Optional[List[str]]]) -> List[str]:
    """Why each refused label is refused: `answered_by` maps the known prediction
    ids to the model_uid that answered, `labelled` holds ids that have a label."""
    reasons, seen = [], set()
    for item in labels:
        uid = answered_by.get(item.prediction_id)
        if uid is None:
            reasons.append(f"{item.where}: unknown prediction_id {item.prediction_id!r}")
        elif item.prediction_id in seen:
            reasons.append(f"{item.where}: prediction {item.prediction_id} is labelled twice in "
                           "this batch")
        elif item.prediction_id in labelled:
            reasons.append(f"{item.where}: prediction {item.prediction_id} already has a label")
        elif class_names_of(uid) is None:
            reasons.append(f"{item.where}: the model that answered ({uid}) is not in the registry")
        elif item.label not in class_names_of(uid):
            reasons.append(f"{item.where}: {item.label!r} is not a class of the model that answered "
                           f"({uid}: {', '.join(class_names_of(uid))})")
        seen.add(item.prediction_id)
    return reasons


def record(log_url: str, labels: Sequence[Label],
           class_names_of: Callable[[str], Optional[List[str]]], source: str) -> int:
    """Writes every label in one transaction, or raises FeedbackRefused and writes none."""
    ids = list(dict.fromkeys(item.prediction_id for item in labels))
    engine = store.require_schema(log_url)
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with engine.begin() as connection:
            answered_by, labelled = {}, set()
            for part in _chunks(ids):
                answered_by.update((pid, uid) for pid, uid in connection.execute(
                    select(PredictionLog.prediction_id, PredictionLog.model_uid)
                    .where(PredictionLog.prediction_id.in_(part))))
                labelled.update(connection.scalars(
                    select(Feedback.prediction_id).where(Feedback.prediction_id.in_(part))))
            reasons = problems(labels, answered_by, labelled, class_names_of)
            if reasons:
                raise FeedbackRefused(422, reasons)
            connection.execute(insert(Feedback), [
                {"prediction_id": item.prediction_id, "label": item.label, "source": source,
                 "class_id": class_names_of(answered_by[item.prediction_id]).index(item.label),
                 "created_at": now} for item in labels])
    except IntegrityError:   # another writer labelled one of them since the check
        raise FeedbackRefused(409, ["a prediction in this batch was labelled by another request "
                                    "at the same time; nothing recorded, send the batch again "
                                    "to see which"]) from None
    return len(labels)


def registry_class_names(registry_url: str) -> Callable[[str], Optional[List[str]]]:
    """class_names_of(model_uid), read from the registry once per model (None: not there)."""
    engine, known = store.require_schema(registry_url), {}

    def class_names_of(uid: str) -> Optional[List[str]]:
        if uid not in known:
            try:
                known[uid] = list(store.get(engine, uid).training_config["class_names"])
            except store.RegistryError:
                return None
        return known[uid]
    return class_names_of

"""`imgpipe registry promote --if-better`: promotion on live labelled evidence.

The challenger's labelled answers are compared with the champion's on the
same traffic (serving/live_quality.py); it is promoted only when it is better
by the margin at the confidence asked for. Every decision, promoted or not,
is a `promotion_decision` row with its numbers, and a tag on the challenger's
MLflow model version.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Optional

from sqlalchemy import insert

from imgpipe.registry import store
from imgpipe.registry.models import PromotionDecision

MLFLOW_TAG = "imgpipe.if_better"


def evidence(log_url: str, model_name: str, champion_uid: str, challenger_uid: str,
             since: dt.datetime, margin: float, confidence: float, min_labels: int):
    from imgpipe.serving import live_quality, predlog
    rows = predlog.read_labelled(log_url, model_name, since)
    champion, challenger = live_quality.paired_outcomes(rows, champion_uid, challenger_uid)
    return live_quality.compare(champion, challenger, margin, confidence, min_labels)


def record(engine, model_name: str, challenger_uid: str, champion_uid: Optional[str],
           comparison, promoted: bool, since: dt.datetime) -> None:
    with engine.begin() as connection:
        connection.execute(insert(PromotionDecision).values(
            model_name=model_name, challenger_uid=challenger_uid, champion_uid=champion_uid,
            decision=comparison.decision, promoted=promoted,
            evidence={**comparison.as_dict(), "since": since.isoformat()},
            decided_at=dt.datetime.now(dt.timezone.utc)))


def tag_mlflow(tracking_uri: str, model_name: str, mlflow_version: Optional[int], comparison,
               promoted: bool) -> None:
    from imgpipe.registry import mlflow_sync
    if mlflow_version is None:
        return
    value = json.dumps({"decision": comparison.decision, "promoted": promoted,
                        "difference": comparison.difference, "p_value": comparison.p_value,
                        "labels": [comparison.champion_labelled, comparison.challenger_labelled]})
    mlflow_sync.client(tracking_uri).set_model_version_tag(model_name, str(mlflow_version),
                                                           MLFLOW_TAG, value)


def champion_uid(engine, model_name: str) -> str:
    row = store.champion(engine, model_name)
    if row is None:
        raise store.RegistryError(f"model {model_name!r} has no champion to compare against; "
                                  "promote without --if-better")
    return row.model_uid

"""SQLAlchemy 2 declarative model of the `model_registry` table.

The first five data columns are the source article's row; the rest record
what a team needs to trust and reproduce a model version. Alembic migrations
(`imgpipe/registry/migrations`) create it; `sql/` holds the same DDL.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("registered", "champion", "archived", "rolled_back")
CHAMPION = "champion"
# JSONB on PostgreSQL: queryable and indexable (e.g. per_class_f1->>'cat').
JSON_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")

# Deterministic constraint names, so migrations (and SQLite batch mode) can
# address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ModelVersion(Base):
    __tablename__ = "model_registry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The source article's columns.
    model_uid: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    architecture_type: Mapped[str] = mapped_column(String(100), nullable=False)
    val_accuracy: Mapped[float] = mapped_column(Float, nullable=False)
    artifact_path: Mapped[str] = mapped_column(Text, nullable=False)
    training_date: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # What makes the row a version of a model.
    model_name: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # Evaluation.
    per_class_f1: Mapped[Dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False)
    serving_accuracy: Mapped[Optional[float]] = mapped_column(Float)
    parity_accuracy_gap: Mapped[Optional[float]] = mapped_column(Float)
    parity_disagreement: Mapped[Optional[float]] = mapped_column(Float)
    blessed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # Provenance.
    data_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    schema_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    training_config: Mapped[Dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False)
    augmentation_config: Mapped[Dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False)
    pipeline_run_id: Mapped[Optional[str]] = mapped_column(String(200))
    library_versions: Mapped[Dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False)
    # MLflow: filled in the push's last step (see store.publish's protocol).
    mlflow_run_id: Mapped[Optional[str]] = mapped_column(String(64))
    mlflow_model_version: Mapped[Optional[int]] = mapped_column(Integer)
    # Lifecycle.
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="registered")
    promoted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                    server_default=func.now())
    # (Revision 0002.) What serving is watched against (imgpipe monitor): the served path's mean
    # and per-class confidence and predicted-class distribution on the
    # evaluation split, and the training statistics.
    serving_baseline: Mapped[Optional[Dict[str, Any]]] = mapped_column(JSON_DOCUMENT)
    statistics_path: Mapped[Optional[str]] = mapped_column(Text)
    # What was trained (from the training record): the network's size, the
    # Keras Applications backbone if any, and the weights training started from.
    parameter_count: Mapped[Optional[int]] = mapped_column(Integer)
    backbone: Mapped[Optional[str]] = mapped_column(String(100))
    weights_source: Mapped[Optional[str]] = mapped_column(Text)     # none | imagenet | a file
    weights_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    # (Revision 0004.) What a client must send and what the graph does with it
    # (contract/preprocessing.py), and the evaluation gate's client-mistake rows
    # with any mistakes accepted and why.
    preprocessing_contract: Mapped[Optional[Dict[str, Any]]] = mapped_column(JSON_DOCUMENT)
    fuzz_report: Mapped[Optional[List[Dict[str, Any]]]] = mapped_column(JSON_DOCUMENT)

    __table_args__ = (
        UniqueConstraint("model_name", "version"),
        CheckConstraint("status IN ('registered', 'champion', 'archived', 'rolled_back')",
                        name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        # At most one champion per model name, enforced by the database
        # (a partial unique index: PostgreSQL and SQLite both have them).
        Index("uq_model_registry_one_champion", "model_name", unique=True,
              sqlite_where=text("status = 'champion'"),
              postgresql_where=text("status = 'champion'")),
        Index("ix_model_registry_model_name_status", "model_name", "status"),
        Index("ix_model_registry_model_name_val_accuracy", "model_name", "val_accuracy"),
        Index("ix_model_registry_created_at", "created_at"),
    )

    def as_dict(self) -> Dict[str, Any]:
        """Every column under its column name (JSON/CSV output, MLflow tags)."""
        return {column.name: getattr(self, column.key) for column in self.__table__.columns}


class PredictionLog(Base):
    """One served prediction; written off the request path (imgpipe.serving.predlog)."""
    __tablename__ = "prediction_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model_name: Mapped[str] = mapped_column(String(200), nullable=False)
    model_uid: Mapped[str] = mapped_column(String(200), nullable=False)
    model_version: Mapped[int] = mapped_column(Integer, nullable=False)
    input_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    predicted_class: Mapped[str] = mapped_column(String(200), nullable=False)
    class_id: Mapped[int] = mapped_column(Integer, nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)     # http | cli | shadow
    sample_path: Mapped[Optional[str]] = mapped_column(Text)            # kept input, if sampled
    # (Revision 0005.) Of every uint8 array request, as it arrived: what shows a
    # client's scaling or channel mistake within hours, sampled or not. Null for
    # encoded images (decoded inside the graph; their samples are checked).
    pixel_min: Mapped[Optional[float]] = mapped_column(Float)
    pixel_max: Mapped[Optional[float]] = mapped_column(Float)
    pixel_mean: Mapped[Optional[float]] = mapped_column(Float)
    saturation: Mapped[Optional[float]] = mapped_column(Float)          # share of values at 0 or 255
    channel_means: Mapped[Optional[List[float]]] = mapped_column(JSON_DOCUMENT)
    # (Revision 0006.) The id the answer carried, which ground truth is sent back
    # with (feedback); and which of the served models answered.
    prediction_id: Mapped[Optional[str]] = mapped_column(String(36), unique=True)
    variant: Mapped[Optional[str]] = mapped_column(String(20))          # champion | challenger
    # A shadow challenger's answer to a request the champion answered (whose
    # prediction id the client got, and labels): the champion's prediction id.
    shadow_of: Mapped[Optional[str]] = mapped_column(String(36), index=True)

    __table_args__ = (
        Index("ix_prediction_log_model_name_created_at", "model_name", "created_at"),
        Index("ix_prediction_log_model_uid", "model_uid"),
    )


class Feedback(Base):
    """(Revision 0006.) The true class of one logged prediction, sent back by a
    client (POST /v1/feedback) or imported (`imgpipe feedback import`). One per
    prediction: the database refuses a second, however concurrent."""
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    class_id: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)     # http | import
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


COLUMNS = [column.name for column in ModelVersion.__table__.columns]


class PromotionDecision(Base):
    """(Revision 0006.) `imgpipe registry promote --if-better`: what live labelled
    evidence said about a challenger against the champion, and what was done."""
    __tablename__ = "promotion_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(200), nullable=False)
    challenger_uid: Mapped[str] = mapped_column(String(200), nullable=False)
    champion_uid: Mapped[Optional[str]] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(20), nullable=False)   # BETTER | NOT BETTER | UNDECIDED
    promoted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    evidence: Mapped[Dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False)
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_promotion_decision_model_name_decided_at", "model_name", "decided_at"),)

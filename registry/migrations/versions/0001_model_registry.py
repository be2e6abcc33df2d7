"""model_registry table

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_CHAMPION = sa.text("status = 'champion'")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_registry",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_uid", sa.String(200), nullable=False),
        sa.Column("architecture_type", sa.String(100), nullable=False),
        sa.Column("val_accuracy", sa.Float(), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.Column("training_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("per_class_f1", _JSON, nullable=False),
        sa.Column("serving_accuracy", sa.Float(), nullable=True),
        sa.Column("parity_accuracy_gap", sa.Float(), nullable=True),
        sa.Column("parity_disagreement", sa.Float(), nullable=True),
        sa.Column("blessed", sa.Boolean(), nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("schema_hash", sa.String(64), nullable=False),
        sa.Column("training_config", _JSON, nullable=False),
        sa.Column("augmentation_config", _JSON, nullable=False),
        sa.Column("pipeline_run_id", sa.String(200), nullable=True),
        sa.Column("library_versions", _JSON, nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("mlflow_model_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), server_default="registered", nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("status IN ('registered', 'champion', 'archived', 'rolled_back')",
                           name=op.f("ck_model_registry_status")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_model_registry_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_registry")),
        sa.UniqueConstraint("model_uid", name=op.f("uq_model_registry_model_uid")),
        sa.UniqueConstraint("model_name", "version",
                            name=op.f("uq_model_registry_model_name_version")),
    )
    op.create_index("uq_model_registry_one_champion", "model_registry", ["model_name"],
                    unique=True, sqlite_where=_CHAMPION, postgresql_where=_CHAMPION)
    op.create_index("ix_model_registry_model_name_status", "model_registry",
                    ["model_name", "status"])
    op.create_index("ix_model_registry_model_name_val_accuracy", "model_registry",
                    ["model_name", "val_accuracy"])
    op.create_index("ix_model_registry_created_at", "model_registry", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_model_registry_created_at", table_name="model_registry")
    op.drop_index("ix_model_registry_model_name_val_accuracy", table_name="model_registry")
    op.drop_index("ix_model_registry_model_name_status", table_name="model_registry")
    op.drop_index("uq_model_registry_one_champion", table_name="model_registry")
    op.drop_table("model_registry")

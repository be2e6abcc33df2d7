"""serving baseline on model_registry; prediction_log table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.add_column(sa.Column("serving_baseline", _JSON, nullable=True))
        batch.add_column(sa.Column("statistics_path", sa.Text(), nullable=True))
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_uid", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("predicted_class", sa.String(200), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("sample_path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_log")),
    )
    op.create_index("ix_prediction_log_model_name_created_at", "prediction_log",
                    ["model_name", "created_at"])
    op.create_index("ix_prediction_log_model_uid", "prediction_log", ["model_uid"])


def downgrade() -> None:
    op.drop_index("ix_prediction_log_model_uid", table_name="prediction_log")
    op.drop_index("ix_prediction_log_model_name_created_at", table_name="prediction_log")
    op.drop_table("prediction_log")
    with op.batch_alter_table("model_registry") as batch:
        batch.drop_column("statistics_path")
        batch.drop_column("serving_baseline")

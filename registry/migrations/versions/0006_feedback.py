"""prediction ids and variants on prediction_log; feedback; promotion decisions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("prediction_log") as batch:
        batch.add_column(sa.Column("prediction_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(20), nullable=True))
        batch.add_column(sa.Column("shadow_of", sa.String(36), nullable=True))
        batch.create_unique_constraint("uq_prediction_log_prediction_id", ["prediction_id"])
        batch.create_index("ix_prediction_log_shadow_of", ["shadow_of"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(36), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("prediction_id", name="uq_feedback_prediction_id"),
    )
    op.create_table(
        "promotion_decision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("challenger_uid", sa.String(200), nullable=False),
        sa.Column("champion_uid", sa.String(200), nullable=True),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("evidence", JSON_DOCUMENT, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotion_decision"),
    )
    op.create_index("ix_promotion_decision_model_name_decided_at", "promotion_decision",
                    ["model_name", "decided_at"])


def downgrade() -> None:
    op.drop_index("ix_promotion_decision_model_name_decided_at", table_name="promotion_decision")
    op.drop_table("promotion_decision")
    op.drop_table("feedback")
    with op.batch_alter_table("prediction_log") as batch:
        batch.drop_index("ix_prediction_log_shadow_of")
        batch.drop_constraint("uq_prediction_log_prediction_id", type_="unique")
        batch.drop_column("shadow_of")
        batch.drop_column("variant")
        batch.drop_column("prediction_id")

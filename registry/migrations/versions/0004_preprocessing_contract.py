"""preprocessing contract and client-mistake (fuzz) report on model_registry

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.add_column(sa.Column("preprocessing_contract", JSON_DOCUMENT, nullable=True))
        batch.add_column(sa.Column("fuzz_report", JSON_DOCUMENT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.drop_column("fuzz_report")
        batch.drop_column("preprocessing_contract")

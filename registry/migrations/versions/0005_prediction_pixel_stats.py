"""per-request pixel statistics on prediction_log (array requests)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
FLOATS = ("pixel_min", "pixel_max", "pixel_mean", "saturation")


def upgrade() -> None:
    with op.batch_alter_table("prediction_log") as batch:
        for name in FLOATS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("channel_means", JSON_DOCUMENT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prediction_log") as batch:
        batch.drop_column("channel_means")
        for name in reversed(FLOATS):
            batch.drop_column(name)

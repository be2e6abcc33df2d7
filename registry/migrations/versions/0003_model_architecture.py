"""model architecture columns on model_registry: parameters, backbone, starting weights

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.add_column(sa.Column("parameter_count", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("backbone", sa.String(100), nullable=True))
        batch.add_column(sa.Column("weights_source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("weights_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.drop_column("weights_sha256")
        batch.drop_column("weights_source")
        batch.drop_column("backbone")
        batch.drop_column("parameter_count")

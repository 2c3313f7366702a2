"""github write log: sliding-window pacing replaces installations.next_write_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
import gateway.store


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per reserved write slot (github_app.pacing); the key's index serves its lookups.
    op.create_table('github_writes',
    sa.Column('installation_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('installation_id', 'at')
    )
    # The single next-slot column could not express an hourly budget; the log above does.
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.drop_column('next_write_at')


def downgrade() -> None:
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_write_at', gateway.store.UTCDateTime(timezone=True), nullable=True))

    op.drop_table('github_writes')

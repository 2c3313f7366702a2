"""retention index: sent mail bodies by age

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BODY_CLEARABLE = sa.text("status = 'sent' AND length(raw) > 0")


def upgrade() -> None:
    # Retention empties the bodies of mails sent long ago, found by this index in bounded batches.
    # Partial: a mail enters it when it is sent, so queueing a mail costs nothing here.
    op.create_index('ix_outbound_sent_body_by_age', 'outbound_mails', ['sent_at'], unique=False,
                    sqlite_where=BODY_CLEARABLE, postgresql_where=BODY_CLEARABLE)


def downgrade() -> None:
    op.drop_index('ix_outbound_sent_body_by_age', table_name='outbound_mails')

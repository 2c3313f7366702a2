"""retention indexes: stored mail bodies and handled webhook deliveries by age

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

RAW_CLEARABLE = sa.text("raw IS NOT NULL AND verdict <> 'queued'")
HANDLED = sa.text("outcome IS NOT NULL")


def upgrade() -> None:
    # Retention (gateway.store.retention) finds what is old enough to forget in bounded batches by
    # these, never by reading the tables. Partial: a row enters when it becomes prunable, so an
    # accepted reply (until its job gives it a verdict) and a webhook delivery (until it is handled)
    # cost the SMTP and webhook paths nothing here.
    op.create_index('ix_inbound_raw_by_age', 'inbound_messages', ['received_at'], unique=False,
                    sqlite_where=RAW_CLEARABLE, postgresql_where=RAW_CLEARABLE)
    op.create_index('ix_webhook_handled_by_age', 'webhook_deliveries', ['received_at'], unique=False,
                    sqlite_where=HANDLED, postgresql_where=HANDLED)


def downgrade() -> None:
    op.drop_index('ix_webhook_handled_by_age', table_name='webhook_deliveries')
    op.drop_index('ix_inbound_raw_by_age', table_name='inbound_messages')

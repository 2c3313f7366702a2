"""job claim indexes: partial indexes on queued and running jobs replace ix_jobs_claim

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")
RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    # The claim reads the earliest due queued job, and leases that ran out, each from an index
    # holding only the jobs in that state (gateway.queue.claim): its cost no longer grows with the
    # finished jobs that ix_jobs_claim also held.
    op.create_index('ix_jobs_queued_due', 'jobs', ['status', 'run_after', 'id'], unique=False,
                    sqlite_where=QUEUED, postgresql_where=QUEUED)
    op.create_index('ix_jobs_running_lease', 'jobs', ['status', 'locked_until'], unique=False,
                    sqlite_where=RUNNING, postgresql_where=RUNNING)
    # Counting and listing jobs by status, and finding finished jobs by age (retention).
    op.create_index('ix_jobs_status_finished', 'jobs', ['status', 'finished_at'], unique=False)
    op.drop_index('ix_jobs_claim', table_name='jobs')


def downgrade() -> None:
    op.create_index('ix_jobs_claim', 'jobs', ['status', 'run_after'], unique=False)
    op.drop_index('ix_jobs_status_finished', table_name='jobs')
    op.drop_index('ix_jobs_running_lease', table_name='jobs')
    op.drop_index('ix_jobs_queued_due', table_name='jobs')

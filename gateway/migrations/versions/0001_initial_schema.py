"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa
import gateway.store


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('installation_tokens',
    sa.Column('installation_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('token_ciphertext', sa.Text(), nullable=False),
    sa.Column('expires_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('installation_id')
    )
    op.create_table('installations',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('account', sa.String(length=200), nullable=True),
    sa.Column('suspended_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('suspended_reason', sa.Text(), nullable=True),
    sa.Column('next_write_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('run_after', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('installation_id', sa.BigInteger(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['status', 'run_after'], unique=False)

    op.create_table('threads',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('pr_number', sa.Integer(), nullable=False),
    sa.Column('pr_url', sa.Text(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('installation_id', sa.BigInteger(), nullable=True),
    sa.Column('root_message_id', sa.String(length=255), nullable=True),
    sa.Column('message_seq', sa.Integer(), nullable=False),
    sa.Column('revoked_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # GitHub repository names are case-insensitive (gateway.store.thread_for_pull)
    op.create_index('ix_threads_repo_pr', 'threads', [sa.text('lower(repo)'), 'pr_number'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('delivery_id', sa.String(length=100), nullable=False),
    sa.Column('event', sa.String(length=50), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('received_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('delivery_id')
    )
    op.create_table('inbound_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('thread_id', sa.String(length=16), nullable=True),
    sa.Column('message_id', sa.String(length=998), nullable=True),
    sa.Column('envelope_from', sa.String(length=320), nullable=False),
    sa.Column('recipients', sa.Text(), nullable=False),
    sa.Column('from_address', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('peer', sa.String(length=100), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.Column('verdict', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('comment_id', sa.BigInteger(), nullable=True),
    sa.Column('comment_url', sa.Text(), nullable=True),
    sa.Column('received_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_thread_msgid', ['thread_id', 'message_id'], unique=False)
        batch_op.create_index('ix_inbound_verdict', ['verdict'], unique=False)

    op.create_table('outbound_mails',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('thread_id', sa.String(length=16), nullable=True),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('envelope_from', sa.String(length=320), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('participants',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('thread_id', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('unsubscribed_at', gateway.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('thread_id', 'email')
    )
    op.create_table('pull_request_requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('head', sa.String(length=255), nullable=False),
    sa.Column('base', sa.String(length=255), nullable=True),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('reporter_email', sa.String(length=320), nullable=False),
    sa.Column('reporter_name', sa.String(length=200), nullable=True),
    sa.Column('installation_id', sa.BigInteger(), nullable=True),
    sa.Column('source_url', sa.Text(), nullable=True),
    sa.Column('source_ref', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('pr_number', sa.Integer(), nullable=True),
    sa.Column('pr_url', sa.Text(), nullable=True),
    sa.Column('thread_id', sa.String(length=16), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )


def downgrade() -> None:
    op.drop_table('pull_request_requests')
    op.drop_table('participants')
    op.drop_table('outbound_mails')
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_verdict')
        batch_op.drop_index('ix_inbound_thread_msgid')

    op.drop_table('inbound_messages')
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_threads_repo_pr', table_name='threads')
    op.drop_table('threads')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_claim')

    op.drop_table('jobs')
    op.drop_table('installations')
    op.drop_table('installation_tokens')

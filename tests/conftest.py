import pytest

from tests.support.databases import migrated_database


@pytest.fixture
def db(tmp_path):
    database, close = migrated_database(tmp_path)
    yield database
    close()


@pytest.fixture
def gateway(db, tmp_path):
    """The whole gateway on real sockets; see tests/support/harness.py."""
    from tests.support.harness import start_harness

    harness = start_harness(db, tmp_path)
    yield harness
    harness.close()

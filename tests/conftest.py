import pytest

from tests.support.databases import migrated_database


@pytest.fixture
def db(tmp_path):
    database, close = migrated_database(tmp_path)
    yield database
    close()

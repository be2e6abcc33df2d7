"""The throwaway PostgreSQL server fixtures (tests/postgres_server.py)."""
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres


def test_server_answers_version(postgres_server):
    engine = sa.create_engine(postgres_server.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version()")).scalar().startswith("PostgreSQL")
            major = int(conn.execute(sa.text("SHOW server_version_num")).scalar()) // 10000
    finally:
        engine.dispose()
    assert major >= 13


def test_databases_are_independent(postgres_server, postgres_url):
    other_url = postgres_server.create_database("independence_check")
    engines = [sa.create_engine(url) for url in (postgres_url, other_url)]
    try:
        assert sa.inspect(engines[0]).get_table_names() == []  # every test starts empty
        with engines[0].begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (id int)"))
        assert sa.inspect(engines[0]).has_table("only_here")
        assert not sa.inspect(engines[1]).has_table("only_here")
    finally:
        for engine in engines:
            engine.dispose()

"""The record-store contract (tests/unit/test_records_sqlite.py) against a real
PostgreSQL server (tests/integration/pg_server.py: started for this module, one fresh
database per test), and what only PostgreSQL does: reconnecting, connection errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.records import Outcome, RecordStoreError, open_store
from tests.integration.conftest import free_port
from tests.integration.pg_server import fresh_database, postgres_server
from tests.unit.test_records_sqlite import NOW, StoreContract, StoreTarget, make_call, make_turn

__all__: list[str] = []


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_target(self, pg_url: str, tmp_path: Path) -> StoreTarget:
        return StoreTarget(fresh_database(pg_url), tmp_path)


async def test_schema_is_created_once_with_native_types(pg_url: str, tmp_path: Path) -> None:
    url = fresh_database(pg_url)
    first, second = open_store(url, data_dir=tmp_path), open_store(url, data_dir=tmp_path)
    try:
        await first.start_call(make_call("c1", turns=(make_turn(0),)))
        assert [r.call_id for r in await second.list_calls()] == ["c1"]
    finally:
        await first.close()
        await second.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        types: dict[str, str] = dict(conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM "
            "information_schema.columns WHERE table_name IN ('calls', 'turns')").fetchall())
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'calls'")}
    assert types["calls.started_at"] == "timestamp with time zone"
    assert types["turns.slots"] == types["turns.parts_ms"] == "jsonb"
    assert types["calls.recording_pauses"] == "jsonb"
    assert {"calls_started_at", "calls_ended_at", "calls_outcome"} <= indexes


async def test_a_broken_connection_is_reopened_once(pg_url: str, tmp_path: Path) -> None:
    url = fresh_database(pg_url)
    store = open_store(url, data_dir=tmp_path)
    try:
        await store.start_call(make_call("c1"))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))
            assert killed.fetchone() == (1,)
        await store.put_turn("c1", make_turn(0))  # on a new connection
        await store.end_call("c1", ended_at=NOW, outcome=Outcome.COMPLETED)
        got = await store.get("c1")
        assert got is not None and got.turns == (make_turn(0),)
    finally:
        await store.close()


async def test_an_unreachable_server_is_a_record_store_error(tmp_path: Path) -> None:
    store = open_store(f"postgresql://voicebot:hunter2@127.0.0.1:{free_port()}/calls"
                       "?connect_timeout=5", data_dir=tmp_path)
    with pytest.raises(RecordStoreError) as error:
        await store.recover(now=NOW)
    assert "hunter2" not in str(error.value)
    assert "127.0.0.1" in str(error.value)
    await store.close()

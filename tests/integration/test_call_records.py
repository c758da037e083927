"""Calls leave a record, a recording and a webhook, and no card digits anywhere.

The real server (``--stack lite``) with records in SQLite, or in a real PostgreSQL
server the test starts (tests/integration/pg_server.py), recordings on and an
end-of-call webhook to a receiver the test runs; real calls over the native protocol
(espeak-ng callers, DTMF).  Then: a server killed with SIGKILL mid-call keeps the
turns it had answered, and a restart closes the record as failed.  Every test runs
on both stores.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from server.call_webhook import verify_signature
from server.client import CallerTurn, CallOptions, place_call, prepare_turns
from server.records import Outcome, open_store
from tests.integration.conftest import ServerProcess, running_server
from tests.integration.pg_server import fresh_database, postgres_server

__all__: list[str] = []

pytestmark = pytest.mark.slow

SECRET = "test-secret-0123456789abcdef"
CARD_SPOKEN, CARD_KEYED = "4217", "9031"  # both in the demo's table
_FLOAT = re.compile(r"\d+\.\d+(?:e[+-]?\d+)?")
FORBIDDEN = ("4217", "9031", "four two one seven", "nine zero three one", "9 0 3 1",
             "4 2 1 7")


class _Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    posts: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (_Receiver,), {"posts": posts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ended", posts
    server.shutdown()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request: pytest.FixtureRequest) -> str:
    """The ``records:`` target: SQLite in the test's data folder, or a fresh database
    on the real PostgreSQL server."""
    if request.param == "sqlite":
        return "sqlite"
    return fresh_database(request.getfixturevalue("postgres"))


def _config(folder: Path, records: str, webhook_url: str | None = None) -> Path:
    path = folder / "voicebot.yaml"
    lines = ["stack: lite", f"data_dir: {folder / 'data'}", f"records: '{records}'",
             "recordings: true", "webhooks: {allow_private: true}"]
    if webhook_url:
        lines.append(f"call_webhook: {{url: '{webhook_url}', secret_env: CALL_SECRET, "
                     "backoff_s: 0.1}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _records(folder: Path, records: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = open_store(records, data_dir=folder / "data")
        try:
            return [r.to_json() async for r in store.iter_calls()]
        finally:
            await store.close()
    return asyncio.run(read())


def _stored_text(folder: Path, records: str) -> str:
    """Everything the store holds, as text: SQLite's files (the WAL too), or every row of
    the PostgreSQL tables."""
    if records == "sqlite":
        files = (folder / "data").glob("calls.sqlite3*")
        return b"".join(p.read_bytes() for p in files).decode("latin-1")
    import psycopg

    with psycopg.connect(records) as db:
        rows = db.execute("SELECT row_to_json(c)::text FROM calls c UNION ALL "
                          "SELECT row_to_json(t)::text FROM turns t").fetchall()
    return "\n".join(row[0] for row in rows)


async def _call(server: ServerProcess, call_id: str, *turns: CallerTurn,
                phone_line: bool = False) -> None:
    options = CallOptions(url=server.url, call_id=call_id,
                          encoding="mulaw" if phone_line else "pcm16",
                          sample_rate_hz=8000 if phone_line else 16000)
    prepared = await asyncio.to_thread(prepare_turns, list(turns), options)
    await place_call(prepared, options)


def test_a_call_leaves_a_masked_record_recording_and_webhook(
        tmp_path: Path, records: str,
        receiver: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, posts = receiver
    posts.clear()
    with running_server(tmp_path, "--config", str(_config(tmp_path, records, url)),
                        env={"CALL_SECRET": SECRET}) as server:
        asyncio.run(_call(server, "spoken-1", CallerTurn("text", "what is my balance"),
                          CallerTurn("text", "four two one seven"),
                          CallerTurn("text", "goodbye")))
        asyncio.run(_call(server, "keyed-1", CallerTurn("text", "check my balance"),
                          CallerTurn("dtmf", f"{CARD_KEYED}#"), CallerTurn("text", "goodbye"),
                          phone_line=True))
        log = server.log_once("call spoken-1", "call keyed-1")
        with urllib.request.urlopen(f"{server.http}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        deadline = time.monotonic() + 15
        while len(posts) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        calls = {r["provider_call_id"]: r for r in _records(tmp_path, records)}
        with urllib.request.urlopen(
                f"{server.http}/calls/{calls['keyed-1']['call_id']}", timeout=5) as response:
            served = json.loads(response.read())
    assert served == calls["keyed-1"]

    spoken, keyed = calls["spoken-1"], calls["keyed-1"]
    for record in (spoken, keyed):
        assert record["outcome"] == Outcome.COMPLETED.value, record
        assert record["provider"] == "native" and record["scenario"] == "bank_card"
        assert [t["source"] for t in record["turns"]][:2] == ["greeting", "speech"]
        assert record["turns"][1]["intent"] == "check_balance"
        assert all(t["latency_ms"] is not None for t in record["turns"])
    answer = keyed["turns"][2]
    assert (answer["source"], answer["dtmf"], answer["slots"]) == ("dtmf", "****",
                                                                    {"card_last4": "****"})
    assert "1,250.40" in spoken["turns"][2]["reply"] and "****" in spoken["turns"][2]["reply"]
    assert "87.15" in answer["reply"]

    # The end-of-call webhook: signed, the same masked record.
    assert len(posts) == 2
    for headers, body in posts:
        assert verify_signature(SECRET, headers["X-Voicebot-Timestamp"], body,
                                headers["X-Voicebot-Signature"], now=time.time())
        sent = json.loads(body)
        assert sent["turns"] == calls[sent["provider_call_id"]]["turns"]

    # No card digits in the log, the store (SQLite's WAL too), /metrics or the webhooks.
    stored = _stored_text(tmp_path, records)
    for text in (log, stored, metrics, *(b.decode() for _, b in posts)):
        # Measured floats (latency parts, /metrics' *_created timestamps such as
        # 1.796186964217089e+09) may hold any four digits by chance: not a card number.
        lowered = _FLOAT.sub("<float>", text.lower())
        for needle in FORBIDDEN:
            assert needle not in lowered, f"{needle!r} leaked"

    # The recordings: stereo WAVs with silence over the sensitive pause.
    for record in (spoken, keyed):
        pauses = record["recording_pauses"]
        assert pauses and pauses[0]["reason"] == "sensitive slot card_last4"
        with wave.open(str(record["recording"]), "rb") as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 16000)
            frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
        assert np.abs(frames[:, 0]).max() > 1000 and np.abs(frames[:, 1]).max() > 1000
        for pause in pauses:
            start, end = (int(pause[k] * 16) for k in ("start_ms", "end_ms"))
            assert end - start > 8000  # the caller's answer (> 0.5 s) fell in it
            assert not frames[start:end].any()


def test_turns_answered_before_a_sigkill_survive_it(tmp_path: Path, records: str) -> None:
    config = _config(tmp_path, records)
    with running_server(tmp_path, "--config", str(config)) as server:
        call = threading.Thread(target=lambda: asyncio.run(_call(
            server, "killed-1", CallerTurn("text", "I lost my card"),
            CallerTurn("text", "yes"), CallerTurn("text", "goodbye"))), daemon=True)
        call.start()
        deadline = time.monotonic() + 60
        answered = 0
        while answered < 2 and time.monotonic() < deadline:  # greeting + "I lost my card"
            time.sleep(0.1)
            answered = sum(len(r["turns"]) for r in _records(tmp_path, records))
        assert answered >= 2
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        call.join(timeout=30)
    [record] = _records(tmp_path, records)
    assert record["outcome"] == Outcome.IN_PROGRESS.value  # nobody closed it yet
    assert [t["source"] for t in record["turns"]][:2] == ["greeting", "speech"]
    assert record["turns"][1]["intent"] == "lost_card"
    with running_server(tmp_path, "--config", str(config)):
        pass  # the restart closes what the killed server left open
    [record] = _records(tmp_path, records)
    assert record["outcome"] == Outcome.FAILED.value
    assert len(record["turns"]) >= 2
    recordings = list((tmp_path / "data" / "recordings").rglob("*.wav"))
    assert len(recordings) == 1
    with wave.open(str(recordings[0]), "rb") as wav:  # cut short, still a valid WAV
        assert wav.getnchannels() == 2 and wav.getnframes() > 0

"""The server with the reference stack selected in config: Whisper + MiniLM + Piper.

Both the Whisper model (synthetic whisper-base, built on first use) and the Piper
voice (synthetic medium, from ../shared) have random weights: the call exercises
the real faster-whisper/CTranslate2 and Piper/ONNX Runtime paths end to end, but
transcripts are random tokens and the bot's audio is noise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from server.client import CallerTurn, CallOptions, place_call, prepare_turns
from tests.integration.conftest import REPO, running_server

__all__: list[str] = []

pytestmark = pytest.mark.slow

CONFIG = REPO / "server" / "configs" / "reference.yaml"
VOICE = REPO.parent / "shared" / "models" / "synthetic" / "en_US-synthetic-medium.onnx"


@pytest.fixture(scope="module")
def reference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not VOICE.exists():
        pytest.fail(f"the synthetic Piper voice is missing: {VOICE}")
    with running_server(tmp_path_factory.mktemp("reference"), "--config", str(CONFIG)) as server:
        yield server.url


async def test_call_on_whisper_and_piper(reference_url: str) -> None:
    options = CallOptions(url=reference_url, encoding="mulaw", sample_rate_hz=8000)
    turns = [CallerTurn("text", "what is my balance"), CallerTurn("text", "goodbye")]
    prepared = await asyncio.to_thread(prepare_turns, turns, options)
    reports, audio = await place_call(prepared, options)
    assert reports[0].bot_text is not None and reports[0].bot_text.startswith("Hello")
    assert reports[0].latency_ms is not None and reports[0].latency_ms < 2000
    for report in reports[1:]:
        # Synthetic Whisper decodes ~3 tokens per second of speech: random words.
        assert report.transcript, report
        assert report.intent is not None and report.bot_text is not None
        assert report.latency_ms is not None
    assert len(audio) > 8000 * 3  # the bot's (noise) speech came back at the call's rate


"""The server with server/configs/reference.yaml: the `reference` stack (REAL Whisper base
int8 + MiniLM-L6 int8 + REAL Piper en_US-joe-medium, models pulled into models/cache if
missing) with speculative ASR on.

16 kHz PCM: over 8 kHz μ-law Whisper base drops the last word of espeak-ng phrases
("what is my balance" → "what is my"), so the telephone-audio end-to-end test is the
`default` stack's (test_stacks.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from server.client import CallerTurn, CallOptions, place_call, prepare_turns
from tests.integration.conftest import REPO, ensure_stack_models, running_server

__all__: list[str] = []

pytestmark = pytest.mark.slow

CONFIG = REPO / "server" / "configs" / "reference.yaml"


@pytest.fixture(scope="module")
def reference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ensure_stack_models("reference")
    with running_server(tmp_path_factory.mktemp("reference"), "--config", str(CONFIG),
                        "--no-pull") as server:
        log = server.log_path.read_text()
        assert "stack reference: engines vad=silero asr=whisper" in log
        assert "asr model=whisper-base, tts voice=en_US-joe-medium" in log
        yield server.url


async def test_call_on_whisper_and_piper(reference_url: str) -> None:
    options = CallOptions(url=reference_url)
    turns = [CallerTurn("text", "I want to speak to an agent")]
    prepared = await asyncio.to_thread(prepare_turns, turns, options)
    reports, audio = await place_call(prepared, options)
    assert reports[0].bot_text is not None and reports[0].bot_text.startswith("Hello")
    assert reports[0].latency_ms is not None and reports[0].latency_ms < 2000
    assert reports[1].transcript and reports[1].intent == "operator", reports[1]
    assert reports[1].latency_ms is not None
    assert reports[-1].end == "transfer:card_services_agents"
    assert len(audio) > 16000 * 3  # the bot's speech came back at the call's rate

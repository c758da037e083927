"""The real ``default`` stack end to end: Whisper tiny.en int8 + MiniLM-L6 int8 + Piper
en_US-joe-medium (models pulled into models/cache if missing), telephone audio (8 kHz
μ-law) from espeak-ng callers.

What is asserted is what this stack reliably gets from espeak-ng speech: the intents of
whole phrases, "yes" filling a yes/no slot, keypad digits. Spoken digit strings are not
asserted: Whisper tiny.en hears espeak-ng's "four two one seven" as "for two one seven"
or "four two one salmon" as often as right (server/configs/bench-*.yaml and `make
bench-accuracy` measure that).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns
from tests.integration.conftest import (
    REPO,
    ServerProcess,
    ensure_stack_models,
    free_port,
    running_server,
)

__all__: list[str] = []

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    ensure_stack_models("default")
    with running_server(tmp_path_factory.mktemp("default"), "--stack", "default",
                        "--no-pull") as server:
        yield server


async def _call(url: str, *turns: CallerTurn, call_id: str = "") -> list[TurnReport]:
    options = CallOptions(url=url, encoding="mulaw", sample_rate_hz=8000)
    if call_id:
        options = replace(options, call_id=call_id)
    prepared = await asyncio.to_thread(prepare_turns, list(turns), options)
    reports, audio = await place_call(prepared, options)
    assert len(audio) > 8000 * 3  # the bot spoke (Piper), at the call's rate
    assert np.abs(audio.astype(np.int32)).max() > 1000
    assert reports[0].bot_text is not None and reports[0].bot_text.startswith("Hello")
    for report in reports[1:]:
        assert report.latency_ms is not None and 0 < report.latency_ms < 10_000, report
    return reports


def test_the_log_names_the_stack_and_its_real_models(default_stack: ServerProcess) -> None:
    log = default_stack.log_path.read_text()
    assert ("stack default: engines vad=silero asr=whisper nlu=minilm tts=piper (vad "
            "model=silero-vad, asr model=whisper-tiny.en, tts voice=en_US-joe-medium)") in log
    assert "SYNTHETIC" not in log  # real weights, as the cells' loaders say too
    assert "loaded Whisper" in log and "whisper-tiny.en (int8" in log


async def test_lost_card_walks_the_flow(default_stack: ServerProcess) -> None:
    reports = await _call(default_stack.url, CallerTurn("text", "I lost my card"),
                          CallerTurn("text", "yes"), CallerTurn("text", "goodbye"))
    assert reports[1].transcript and reports[1].intent == "lost_card", reports[1]
    assert "Shall I block it" in (reports[1].bot_text or "")
    assert "blocked" in (reports[2].bot_text or ""), reports[2]  # "yes" filled the slot
    assert reports[3].intent == "goodbye" and reports[-1].end == "hangup:completed"


async def test_balance_with_the_card_digits(default_stack: ServerProcess) -> None:
    reports = await _call(default_stack.url, CallerTurn("text", "what is my balance"),
                          CallerTurn("dtmf", "4217"), CallerTurn("text", "goodbye"))
    assert reports[1].intent == "check_balance", reports[1]
    assert "last four digits" in (reports[1].bot_text or "")
    assert reports[2].intent == "dtmf" and "1,250.40" in (reports[2].bot_text or ""), reports[2]
    assert reports[-1].end == "hangup:completed"


def test_a_stack_whose_models_are_missing_names_the_pull(tmp_path: Path) -> None:
    env = dict(os.environ, VOICEBOT_MODELS_DIR=str(tmp_path / "empty"))
    done = subprocess.run([sys.executable, "-m", "server", "serve", "--stack", "reference",
                           "--no-pull", "--port", str(free_port())], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert ("model 'silero-vad' is not installed in " f"{tmp_path / 'empty'}; run "
            "`voicebot models pull silero-vad` (the whole stack: `voicebot models pull "
            "--stack reference") in done.stderr  # the first of the stack's models


async def test_a_spoken_card_number_ends_its_turn_once_complete(
    default_stack: ServerProcess, tmp_path: Path
) -> None:
    """Recorded human digits "4 2 1 7" (Debian's Asterisk prompts, 250 ms apart): the
    speculative decode 200 ms into the pause holds four digits, so the turn ends there
    instead of after the 800 ms a digit string otherwise gets."""
    from bench.speechdata import SpeechDataMissingError, asterisk_digit, read_wav, trim_silence

    try:
        recordings = [read_wav(asterisk_digit(d)) for d in "4217"]
    except SpeechDataMissingError as exc:
        pytest.skip(str(exc))
    gap = np.zeros(recordings[0][1] // 4, dtype=np.int16)
    parts = [part for pcm, rate in recordings for part in (trim_silence(pcm, rate), gap)]
    path = tmp_path / "card.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(recordings[0][1])
        # A caller's line is not silent to the sample before they speak: 300 ms of quiet
        # first, so the VAD's onset (and the speech pad before it) holds the whole "four".
        lead = np.zeros(recordings[0][1] * 3 // 10, dtype=np.int16)
        out.writeframes(np.concatenate([lead, *parts[:-1]]).tobytes())
    reports = await _call(default_stack.url, CallerTurn("text", "what is my balance"),
                          CallerTurn("wav", str(path)), CallerTurn("text", "goodbye"),
                          call_id="spoken-card")
    assert "1,250.40" in (reports[2].bot_text or ""), reports[2]
    log = await asyncio.to_thread(default_stack.log_once, "call=spoken-card turn=2 ")
    line = next(x for x in log.splitlines() if "call=spoken-card turn=2 " in x)
    wait_ms = int(line.split("endpoint_wait_ms=")[1].split()[0])
    assert wait_ms < 800, line  # ended by the speculation, not by the digits endpoint

"""Whole calls for ``python -m bench accuracy``: a real ``voicebot serve`` pinned to one
core, the benchmark's caller (``server.client.place_call``, the ``voicebot call``
client) on another, G.711 μ-law at 8 kHz in 20 ms frames at real-time pace.

* **Card numbers**: a ``check_balance`` call: "what is my balance" (espeak-ng), then
  four digits joined from the Asterisk voice's recorded ``digits/N.wav`` (silence
  trimmed, 150-350 ms natural gaps, seeded).  Right when the bot's reply reads back
  exactly those four digits ("... card ending in 4217 ...").
* **Intents**: single-turn calls from the greeting, one caller phrasing each (not among
  the scenario's examples: :data:`bench.calls.PHRASINGS`, and
  :data:`bench.calls.OUT_OF_DOMAIN` that should stay ``fallback``), spoken by espeak-ng
  and by a Piper voice; right when the ``intent`` event names the meant intent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from websockets.exceptions import InvalidStatus

from server.client import CallerTurn, CallOptions, TurnReport, place_call
from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm, Synthesizer

from .accuracy_wer import LINE, CallerLine
from .speechdata import asterisk_digit, read_wav, trim_silence

__all__ = ["CardCall", "ServedStack", "card_calls", "intent_calls", "make_cards", "serve"]

log = logging.getLogger(__name__)

_READ_BACK = re.compile(r"ending in (\d+)")
_ASKS_DIGITS = "last four digits"


@dataclass(frozen=True, slots=True)
class ServedStack:
    """A running server: where to call it, its pid, and its pinning as the kernel has it."""

    url: str
    pid: int
    pinning: str


@dataclass(frozen=True, slots=True)
class CardCall:
    """One card number and the caller audio that says it."""

    card: str
    gaps_ms: tuple[int, ...]
    audio: Pcm


def _cpus_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@contextlib.contextmanager
def serve(config: Path, *, work_dir: Path, port: int, cpu: int | None,
          dialogs: int, ready_timeout_s: float = 600.0) -> Iterator[ServedStack]:
    """``voicebot serve --config CONFIG``, pinned to ``cpu`` with ``taskset``, until the
    block ends (SIGTERM, then SIGKILL); its log in ``work_dir/server.log``.  Admission
    is widened (``dialogs`` per core, no SLO refusals): accuracy does not depend on it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "server", "serve", "--config", str(config),
               "--port", str(port), "--dialogs-per-core", str(dialogs), "--slo-p95-ms", "1e9"]
    if cpu is not None:
        if shutil.which("taskset") is None:
            raise RuntimeError("taskset (util-linux) is needed to pin the server")
        command = ["taskset", "-c", str(cpu), *command]
    log_path = work_dir / "server.log"
    with log_path.open("wb") as server_log:
        process = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "VOICEBOT_LOG_LEVEL": "WARNING"})
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the server exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready after {ready_timeout_s:.0f} s")
            time.sleep(0.5)
        yield ServedStack(url=f"ws://127.0.0.1:{port}", pid=process.pid,
                          pinning=f"server pid {process.pid} on CPUs "
                                  f"{_cpus_allowed(process.pid)}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_cards(count: int, *, seed: int, line: CallerLine = LINE) -> list[CardCall]:
    """``count`` four-digit card numbers (seeded) spoken with the recorded Asterisk digits."""
    rng = random.Random(seed)
    digits: dict[str, Pcm] = {}
    for d in "0123456789":
        pcm, rate = read_wav(asterisk_digit(d))
        pcm = resample(pcm, in_rate_hz=rate, out_rate_hz=line.sample_rate_hz)
        digits[d] = trim_silence(pcm, line.sample_rate_hz)
    calls: list[CardCall] = []
    for _ in range(count):
        card = "".join(rng.choice("0123456789") for _ in range(4))
        gaps = tuple(rng.randint(150, 350) for _ in range(3))
        parts: list[Pcm] = [digits[card[0]]]
        for gap_ms, d in zip(gaps, card[1:], strict=True):
            parts += [np.zeros(line.sample_rate_hz * gap_ms // 1000, np.int16), digits[d]]
        calls.append(CardCall(card=card, gaps_ms=gaps, audio=np.concatenate(parts)))
    return calls


def speak(synth: Synthesizer, text: str, *, line: CallerLine = LINE) -> Pcm:
    """``text`` spoken by ``synth``, at the line's rate."""
    return resample(synth.synthesize(text), in_rate_hz=synth.sample_rate_hz,
                    out_rate_hz=line.sample_rate_hz)


async def _call(url: str, turns: Sequence[Pcm], labels: Sequence[str], *, line: CallerLine,
                retries: int = 30) -> list[TurnReport]:
    """One call; a refusal (HTTP 503) is retried, a report per turn (0: greeting)."""
    prepared = [(CallerTurn("wav", label), pcm)
                for label, pcm in zip(labels, turns, strict=True)]
    for _ in range(retries):
        options = CallOptions(url=url, encoding=line.encoding.value,
                              sample_rate_hz=line.sample_rate_hz, turn_timeout_s=30.0)
        try:
            reports, _ = await place_call(prepared, options)
            return reports
        except InvalidStatus as exc:
            if exc.response.status_code != 503:
                raise
            await asyncio.sleep(2.0)
    raise RuntimeError(f"the server refused the call {retries} times")


def _turn(reports: list[TurnReport], n: int) -> TurnReport:
    return reports[n] if len(reports) > n else TurnReport(turn=n)


async def _gather(jobs: Sequence[Any], concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def card_calls(url: str, cards: Sequence[CardCall], *, balance_request: Pcm,
               concurrency: int, line: CallerLine = LINE,
               front_splits: Sequence[int] | None = None) -> dict[str, Any]:
    """The card-number calls; each row says what was heard and what the bot read back
    (and ``front_splits``: in how many alignments the server's front cuts the card's
    digits apart, measured apart, when given)."""
    started = time.perf_counter()
    calls = [_call(url, [balance_request, c.audio], ["what is my balance", c.card], line=line)
             for c in cards]
    results = asyncio.run(_gather(calls, concurrency))
    rows: list[dict[str, Any]] = []
    for n, (card, reports) in enumerate(zip(cards, results, strict=True)):
        ask, answer = _turn(reports, 1), _turn(reports, 2)
        found = _READ_BACK.search(answer.bot_text or "")
        read_back = found.group(1) if found else None
        rows.append({"card": card.card, "gaps_ms": list(card.gaps_ms),
                     "balance_heard": ask.transcript, "balance_intent": ask.intent,
                     "asked_for_digits": _ASKS_DIGITS in (ask.bot_text or ""),
                     "heard": answer.transcript, "bot": answer.bot_text,
                     "read_back": read_back, "correct": read_back == card.card,
                     "front_splits": front_splits[n] if front_splits else None})
    correct = sum(r["correct"] for r in rows)
    return {"correct": correct, "total": len(rows),
            "reached_digits": sum(r["asked_for_digits"] for r in rows),
            "wall_s": round(time.perf_counter() - started, 1), "rows": rows}


def intent_calls(url: str, phrases: Sequence[tuple[str, str]], audio: Sequence[Pcm], *,
                 concurrency: int, line: CallerLine = LINE) -> dict[str, Any]:
    """Single-turn calls: (phrase, meant intent) with its audio; intent from the server."""
    started = time.perf_counter()
    calls = [_call(url, [pcm], [text], line=line)
             for (text, _), pcm in zip(phrases, audio, strict=True)]
    results = asyncio.run(_gather(calls, concurrency))
    rows: list[dict[str, Any]] = []
    for (text, expected), reports in zip(phrases, results, strict=True):
        got = _turn(reports, 1)
        rows.append({"text": text, "expected": expected, "heard": got.transcript,
                     "intent": got.intent, "confidence": got.confidence,
                     "correct": got.intent == expected})
    correct = sum(r["correct"] for r in rows)
    return {"correct": correct, "total": len(rows),
            "wall_s": round(time.perf_counter() - started, 1), "rows": rows}

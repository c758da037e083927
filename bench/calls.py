"""``python -m bench calls``: turn latency and intent accuracy over real calls.

Drives a running server (start it pinned, e.g. ``make bench-calls``) with the
``voicebot call`` client: the demo calls for latency (one at a time), then
single-turn calls with caller phrasings that are NOT in the scenario's
examples, for intent accuracy through ASR + NLU.  Prints the figures and
writes a Markdown and a JSON report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus

from loadtests.machine import cpu_model
from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns

__all__ = ["DEMO_CALLS", "OUT_OF_DOMAIN", "PHRASINGS", "run_bench"]

log = logging.getLogger(__name__)

DEMO_CALLS: tuple[tuple[str, ...], ...] = (
    ("I lost my card", "yes", "goodbye"),
    ("what is my balance", "four two one seven", "goodbye"),
    ("I want to speak to an agent",),
    ("goodbye",),
)

# Caller phrasings that are not among bank_card.yaml's examples, with the intent meant.
PHRASINGS: tuple[tuple[str, str], ...] = (
    ("how much do I have on my account", "check_balance"),
    ("what's my current balance", "check_balance"),
    ("tell me my balance please", "check_balance"),
    ("I'd like to check how much money is on my card", "check_balance"),
    ("can I get my balance", "check_balance"),
    ("how much money is left", "check_balance"),
    ("I think I lost my credit card", "lost_card"),
    ("somebody stole my card", "lost_card"),
    ("my card is gone", "lost_card"),
    ("I can't find my card anywhere", "lost_card"),
    ("I need to block my card", "lost_card"),
    ("my wallet was stolen", "lost_card"),
    ("can I speak to a real person", "operator"),
    ("get me an agent", "operator"),
    ("I want a human please", "operator"),
    ("let me talk to someone", "operator"),
    ("put me through to customer service", "operator"),
    ("I'd like to talk to a representative", "operator"),
    ("bye", "goodbye"),
    ("thanks goodbye", "goodbye"),
    ("that's everything thank you", "goodbye"),
    ("nothing else bye", "goodbye"),
    ("okay goodbye then", "goodbye"),
    ("I'm all done thanks", "goodbye"),
)

# Out-of-domain caller speech: should end as "fallback" (a reprompt), never an intent.
OUT_OF_DOMAIN: tuple[tuple[str, str], ...] = (
    ("what's the weather like in Paris", "fallback"),
    ("my dog likes pizza", "fallback"),
    ("I would like to order a taxi", "fallback"),
    ("play some music for me", "fallback"),
    ("how far away is the moon", "fallback"),
    ("can you recommend a good restaurant", "fallback"),
)


@dataclass(frozen=True, slots=True)
class Audio:
    encoding: str
    sample_rate_hz: int

    @property
    def label(self) -> str:
        return f"{self.encoding} {self.sample_rate_hz} Hz"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)




def _pinning(pid: int | None) -> str:
    if pid is None:
        return "unknown (no --server-pid)"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list"):
                return f"server pid {pid} on CPUs {line.split(':', 1)[1].strip()}"
    except OSError as exc:
        return f"unknown ({exc})"
    return "unknown"


async def _one_call(texts: tuple[str, ...], url: str, audio: Audio) -> list[TurnReport] | None:
    """One call's reports; None when the server refused it (HTTP 503 at the handshake)."""
    options = CallOptions(url=url, encoding=audio.encoding, sample_rate_hz=audio.sample_rate_hz)
    turns = [CallerTurn("text", t) for t in texts]
    prepared = await asyncio.to_thread(prepare_turns, turns, options)
    try:
        reports, _ = await place_call(prepared, options)
    except InvalidStatus as exc:
        if exc.response.status_code != 503:
            raise
        return None
    return reports


async def _latency(url: str, repeat: int, audio: Audio, concurrency: int) -> dict[str, Any]:
    """Each demo call ``repeat`` times, ``concurrency`` copies of it at once."""
    greeting: list[float] = []
    turns: list[float] = []
    failed = refused = 0
    for _ in range(repeat):
        for texts in DEMO_CALLS:
            rounds = await asyncio.gather(*(_one_call(texts, url, audio)
                                            for _ in range(concurrency)))
            for reports in rounds:
                if reports is None:
                    refused += 1
                    continue
                greeting += [r.latency_ms for r in reports[:1] if r.latency_ms is not None]
                turns += [r.latency_ms for r in reports[1:] if r.latency_ms is not None]
                failed += any((r.end or "").startswith(("error", "timeout")) for r in reports)
    return {
        "audio": audio.label,
        "concurrent_calls": concurrency,
        "failed_calls": failed,
        "refused_calls": refused,
        "turns": len(turns),
        "turn_p50_ms": _percentile(turns, 0.5),
        "turn_p95_ms": _percentile(turns, 0.95),
        "turn_max_ms": max(turns, default=float("nan")),
        "greetings": len(greeting),
        "greeting_p50_ms": _percentile(greeting, 0.5),
        "greeting_p95_ms": _percentile(greeting, 0.95),
    }


async def _accuracy(url: str, audio: Audio, concurrency: int,
                    cases: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    rows: list[dict[str, Any]] = []

    async def one(text: str, expected: str) -> None:
        async with gate:
            reports = await _one_call((text,), url, audio)
        got = reports[1] if reports and len(reports) > 1 else TurnReport(turn=1)
        rows.append({"text": text, "expected": expected, "transcript": got.transcript,
                     "intent": got.intent, "confidence": got.confidence,
                     "correct": got.intent == expected})

    await asyncio.gather(*(one(t, e) for t, e in cases))
    correct = sum(r["correct"] for r in rows)
    return {"audio": audio.label, "correct": correct, "total": len(rows),
            "accuracy": correct / len(rows), "rows": rows}


DEFAULT_STACK = ("real: pocketsphinx en-us (scenario LM), MiniLM-L6 int8 ONNX, espeak-ng en-us; "
                 "Silero VAD v6")


def _rss_mb(url: str) -> dict[str, float]:
    """Resident memory per cell (and of the front process), from the server's /metrics."""
    http = url.replace("ws://", "http://").replace("wss://", "https://").rstrip("/")
    try:
        with urllib.request.urlopen(f"{http}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found = re.findall(r'^voicebot_rss_bytes\{cell="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return {cell: round(float(v) / 2**20, 1) for cell, v in found if v != "NaN"}


def run_bench(*, url: str, repeat: int, out_dir: Path, server_pid: int | None,
              concurrency: int = 2, stack: str = DEFAULT_STACK, name: str = "first-call",
              accuracy: bool = True, calls_at_once: int = 1) -> dict[str, Any]:
    """Run the benchmark against ``url``; ``accuracy=False`` measures latency only
    (for stacks whose models are synthetic, where accuracy means nothing)."""
    wide, narrow = Audio("pcm16", 16000), Audio("mulaw", 8000)

    async def main() -> dict[str, Any]:
        results: dict[str, Any] = {"latency": [await _latency(url, repeat, wide, calls_at_once)],
                                   "accuracy": [], "out_of_domain": []}
        if accuracy:
            results["accuracy"] = [await _accuracy(url, a, concurrency, PHRASINGS)
                                   for a in (wide, narrow)]
            results["out_of_domain"] = [await _accuracy(url, a, concurrency, OUT_OF_DOMAIN)
                                        for a in (wide, narrow)]
        return results

    results = asyncio.run(main())
    results["rss_mb"] = _rss_mb(url)
    results["meta"] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "pinning": _pinning(server_pid),
        "models": stack,
        "caller_speech": "synthetic: espeak-ng en-us 165 wpm",
        "latency_definition": "end of caller speech -> first bot audio frame, at the client",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(_markdown(results))
    print(_markdown(results))
    return results


def _markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        "# Call benchmark", "",
        f"- date: {m['date']}", f"- CPU: {m['cpu']}", f"- pinning: {m['pinning']}",
        f"- models: {m['models']}", f"- caller speech: {m['caller_speech']}",
        f"- latency: {m['latency_definition']}",
        f"- resident memory after the run (MB): {r.get('rss_mb') or 'n/a'}", "",
        "| audio | calls at once | turns | turn p50 ms | turn p95 ms | turn max ms "
        "| greeting p50 ms | greeting p95 ms | failed calls | refused calls |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {x['audio']} | {x['concurrent_calls']} | {x['turns']} | {x['turn_p50_ms']:.0f} "
        f"| {x['turn_p95_ms']:.0f} | {x['turn_max_ms']:.0f} | {x['greeting_p50_ms']:.0f} "
        f"| {x['greeting_p95_ms']:.0f} | {x['failed_calls']} | {x['refused_calls']} |"
        for x in r["latency"]
    ]
    if not r["accuracy"]:
        return "\n".join(lines) + "\n"
    lines += ["", "Intent accuracy through ASR + NLU on phrasings not in the scenario:", "",
              "| audio | correct | accuracy |", "|---|---|---|"]
    lines += [f"| {a['audio']} | {a['correct']}/{a['total']} | {a['accuracy']:.0%} |"
              for a in r["accuracy"]]
    lines += ["", "Out-of-domain speech that correctly fell to `fallback`:", "",
              "| audio | rejected | rate |", "|---|---|---|"]
    lines += [f"| {a['audio']} | {a['correct']}/{a['total']} | {a['accuracy']:.0%} |"
              for a in r["out_of_domain"]]
    for a in (*r["accuracy"], *r["out_of_domain"]):
        lines += ["", f"Misses ({a['audio']}):", ""]
        misses = [f"- \"{row['text']}\" → heard \"{row['transcript']}\", {row['intent']} "
                  f"(meant {row['expected']})" for row in a["rows"] if not row["correct"]]
        lines += misses or ["- none"]
    return "\n".join(lines) + "\n"

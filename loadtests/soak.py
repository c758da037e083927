"""Memory soak: many short calls against a running server, the front process's RSS read
from ``/metrics`` as they go.  Does the front leak per call, or does it level off?

    python -m loadtests.soak --url ws://127.0.0.1:8765 --calls 3000 --out docs/benchmarks/soak

Each call: ``start``, 0.5 s of silence sent at once, ``stop``; ``--concurrency`` at a
time.  Prints RSS every ``--every`` calls and the growth per call over the first and the
second half (a leak grows in both; warm-up growth only in the first), and writes
``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import re
import time
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from loadtests.machine import cpu_model

__all__ = ["front_rss_bytes", "main", "soak"]

_START = {"type": "start", "encoding": "pcm16", "sample_rate_hz": 16000}
_SILENCE = b"\x00" * 640  # 20 ms


def front_rss_bytes(http: str, token: str | None = None) -> float:
    """``voicebot_rss_bytes{cell="front"}`` from the server's /metrics."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{http}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    match = re.search(r'^voicebot_rss_bytes\{cell="front"\} (\S+)$', text, re.M)
    if match is None:
        raise RuntimeError("the server's /metrics has no front RSS")
    return float(match.group(1))


async def _one_call(url: str, n: int) -> None:
    async with connect(f"{url}/native", max_size=2**22) as ws:
        await ws.send(json.dumps(_START | {"call_id": f"soak-{n}"}))
        for _ in range(25):
            await ws.send(_SILENCE)
        await ws.send(json.dumps({"type": "stop", "reason": "soak"}))
        async for _ in ws:  # until the server closes
            pass


async def soak(url: str, *, calls: int, concurrency: int, every: int,
               admin: str | None = None) -> list[tuple[int, float]]:
    """(calls done, front RSS bytes) samples, starting at 0."""
    http = admin or url.replace("ws://", "http://").replace("wss://", "https://")
    samples = [(0, front_rss_bytes(http))]
    done = 0
    gate = asyncio.Semaphore(concurrency)

    async def call(n: int) -> None:
        nonlocal done
        async with gate:
            await _one_call(url, n)
            done += 1

    for first in range(0, calls, every):
        await asyncio.gather(*(call(n) for n in range(first, min(calls, first + every))))
        await asyncio.sleep(0.5)  # let the last calls' cleanup finish
        samples.append((done, front_rss_bytes(http)))
        print(f"{done:6d} calls  front RSS {samples[-1][1] / 2**20:8.1f} MiB", flush=True)
    return samples




def _per_call(samples: list[tuple[int, float]]) -> tuple[float, float]:
    half = len(samples) // 2
    (c0, r0), (c1, r1), (c2, r2) = samples[0], samples[half], samples[-1]
    return (r1 - r0) / max(1, c1 - c0), (r2 - r1) / max(1, c2 - c1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765")
    parser.add_argument("--admin", default=None, help="http URL serving /metrics, if apart")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--every", type=int, default=0, help="default: calls / 12")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/soak"))
    parser.add_argument("--pinning", default="none", help="how server and client were pinned")
    args = parser.parse_args(argv)
    started = time.monotonic()
    every = args.every or max(1, args.calls // 12)
    samples = asyncio.run(soak(args.url, calls=args.calls, concurrency=args.concurrency,
                               every=every, admin=args.admin))
    first, second = _per_call(samples)
    report = {
        "what": "front-process RSS over short native calls (start, 0.5 s silence, stop)",
        "date": datetime.date.today().isoformat(), "machine": cpu_model(),
        "pinning": args.pinning, "calls": args.calls, "concurrency": args.concurrency,
        "seconds": round(time.monotonic() - started, 1),
        "samples": [{"calls": c, "rss_bytes": r} for c, r in samples],
        "growth_bytes_per_call": {"first_half": round(first, 1), "second_half": round(second, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    rows = "\n".join(f"| {c} | {r / 2**20:.1f} |" for c, r in samples)
    args.out.with_suffix(".md").write_text(
        f"# Front-process memory soak ({report['date']})\n\n{report['what']}; "
        f"{args.calls} calls, {args.concurrency} at a time, {report['seconds']} s; "
        f"{report['machine']}, pinning: {args.pinning}; default engines (real models).\n\n"
        f"| calls | front RSS (MiB) |\n|---|---|\n{rows}\n\n"
        f"Growth per call: first half {first:.0f} B, second half {second:.0f} B.\n")
    print(f"growth per call: first half {first:.0f} B, second half {second:.0f} B")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""One NLU worker, measured: ``python -m bench.nlu_worker --examples N [--cache FILE]``.

A fresh process loads the real MiniLM int8 embedder (one thread), warms it on a
two-intent domain, then trains a 77-intent scenario of ``N`` examples and classifies
300 held-out phrasings: BANKING77's (the first examples of each intent, the first
test rows) when its verified files are in out/nlu-data/, else the SYNTHETIC set
(bench/nlu_data.py).  Prints one JSON line:
load seconds, RSS before / after training (and the peak), classify p50 / p95 ms.
Run it under ``taskset -c CPU`` to pin it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["main"]


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmHWM``: its peak since exec; ``ru_maxrss``
    would include the parent's peak from before the fork)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=770)
    parser.add_argument("--models-dir", type=Path, default=Path("models/cache"))
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache file")
    args = parser.parse_args()
    from bench.nlu_data import load_banking77, synthetic
    from bench.nlu_fetch import BANKING77, DEFAULT_ROOT, ensure_files
    from voicebot.nlu.classifier import EmbeddingIntentClassifier
    from voicebot.nlu.embedder import MiniLmEmbedder
    from voicebot.nlu.embedding_cache import EmbeddingCache

    embedder = MiniLmEmbedder.from_cache(args.models_dir)
    cache = (EmbeddingCache(args.cache, model_key=embedder.cache_key)
             if args.cache is not None else None)
    clf = EmbeddingIntentClassifier(embedder=embedder, cache=cache)
    clf.train(domain="warm", examples={"a": ["hello there"], "b": ["goodbye"]})
    clf.classify("hi", domain="warm")
    try:
        data = load_banking77(ensure_files(BANKING77, DEFAULT_ROOT, download=False) / "banking77")
    except FileNotFoundError:
        data = synthetic()
    by_intent: dict[str, list[str]] = {}
    for text, intent in data.train:
        by_intent.setdefault(intent, []).append(text)
    per_intent = max(1, -(-args.examples // len(by_intent)))
    examples = {k: v[:per_intent] for k, v in by_intent.items()}
    while sum(map(len, examples.values())) > args.examples:  # trim to exactly N
        longest = max(examples, key=lambda k: len(examples[k]))
        examples[longest] = examples[longest][:-1]
    before = _rss_mb()
    started = time.perf_counter()
    clf.train(domain="d", examples=examples)
    load_s = time.perf_counter() - started
    after = _rss_mb()
    latencies = []
    for text, _ in data.test[:300]:
        t = time.perf_counter()
        clf.classify(text, domain="d")
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    print(json.dumps({
        "examples": sum(map(len, examples.values())), "intents": len(examples),
        "load_s": round(load_s, 3), "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1), "rss_raise_mb": round(after - before, 1),
        "peak_rss_mb": round(_rss_mb("VmHWM"), 1),
        "classify_p50_ms": round(latencies[len(latencies) // 2], 2),
        "classify_p95_ms": round(latencies[int(len(latencies) * 0.95)], 2),
        "cached": cache is not None, "data": data.name,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

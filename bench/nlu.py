"""``python -m bench nlu``: the intent classifier on many-intent data (docs/benchmarks/nlu.md).

For each data set (bench/nlu_data.py; the public ones fetched, pinned and verified
by bench/nlu_fetch.py into out/nlu-data/ unless given as local files): 10 examples
per intent sampled three times (seeds 0-2), trained exactly as a scenario trains
(calibration and regression fitted at load), scored on the test set: accuracy,
accuracy at 90 % and 80 % coverage (the most confident answers kept),
frozen-embedding logistic-regression baselines on the same embeddings (softmax
regression, L2 at sklearn's default C = 1 and at C = 10, 30, 100), the similarity
scores alone (the method before the regressions were added), out-of-scope rejection at the
scenarios' threshold 0.5 and its AUROC; then with all training data.  Then fresh
worker processes pinned with ``taskset -c CPU`` measure scenario load time, RSS
raise and classify latency for 77 x 10 and 1,000 examples, cold and with the
embedding cache (bench/nlu_worker.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.nlu_data import IntentData, load_banking77, load_clinc, synthetic
from bench.nlu_fetch import BANKING77, CLINC150, DEFAULT_ROOT, ensure_files

__all__ = ["LOGREG_C", "register", "run"]

LOGREG_C = (1.0, 10.0, 30.0, 100.0)
"""The baselines' strengths (sklearn's C): its default, and stronger fits."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nlu", help="intent accuracy, calibration, out-of-scope, load and latency; "
        "docs/benchmarks/nlu.md")
    parser.add_argument("--clinc-json", type=Path, default=None,
                        help="CLINC150 data_full.json (default: fetched into --data-dir)")
    parser.add_argument("--banking77-dir", type=Path, default=None,
                        help="train.csv, test.csv (default: fetched into --data-dir)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_ROOT,
                        help="where the pinned public sets are cached (verified by sha256)")
    parser.add_argument("--no-download", action="store_true",
                        help="use --data-dir's verified files only, fetch nothing")
    parser.add_argument("--cpu", type=int, default=1, help="core the workers are pinned to")
    parser.add_argument("--models-dir", type=Path, default=Path("models/cache"))
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    return parser


def _coverage_accuracy(correct: np.ndarray, confidence: np.ndarray, share: float) -> float:
    keep = np.argsort(-confidence, kind="stable")[: max(1, round(share * len(correct)))]
    return float(correct[keep].mean())


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    scores = np.concatenate([positive, negative])
    ranks = scores.argsort().argsort() + 1
    r_pos = ranks[: len(positive)].sum()
    return float((r_pos - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def _evaluate(clf: Any, data: IntentData, train: list[tuple[str, str]],
              domain: str) -> dict[str, Any]:
    from voicebot.nlu.calibration import probabilities
    from voicebot.nlu.softmax_regression import fit_softmax_regression

    examples: dict[str, list[str]] = {}
    for text, intent in train:
        examples.setdefault(intent, []).append(text)
    clf.train(domain=domain, examples=examples, out_of_scope=data.oos_train)
    trained = clf.trained(domain)
    names = list(trained.index.names)
    test_texts = [t for t, _ in data.test]
    gold = np.array([names.index(i) for _, i in data.test])
    q, _ = clf._embed_many(test_texts)
    probs, _ = trained.probabilities(q, test_texts)
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    correct = pred == gold
    sim_probs, _ = probabilities(trained.index.score(q), trained.calibration)
    sim_correct = sim_probs.argmax(axis=1) == gold
    logreg = {f"{c:g}": float((fit_softmax_regression(
        trained.index.rows, trained.index.labels, len(names), l2_per_example=1.0 / c,
    ).logits(q).argmax(axis=1) == gold).mean()) for c in LOGREG_C}
    curve = {f"{share:.2f}": _coverage_accuracy(correct, conf, share)
             for share in (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5)}
    thresholds = {f"{t:.1f}": [float((conf >= t).mean()),
                               float(correct[conf >= t].mean()) if (conf >= t).any() else 0.0]
                  for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}
    out = {"examples": len(train), "accuracy": float(correct.mean()),
           "accuracy_at_90": _coverage_accuracy(correct, conf, 0.9),
           "accuracy_at_80": _coverage_accuracy(correct, conf, 0.8),
           "logreg": logreg,
           "similarity_accuracy": float(sim_correct.mean()),
           "similarity_accuracy_at_90": _coverage_accuracy(
               sim_correct, sim_probs.max(axis=1), 0.9),
           "coverage_curve": curve, "threshold_curve": thresholds,
           "accepted_at_0.5": float((conf >= 0.5).mean()),
           "accuracy_of_accepted_at_0.5": float(correct[conf >= 0.5].mean())
           if (conf >= 0.5).any() else 0.0,
           "temperature": trained.calibration.temperature,
           "product_temperature": trained.temperature,
           "background": trained.calibration.background}
    if data.oos_test:
        oq, _ = clf._embed_many(list(data.oos_test))
        oprobs, _ = trained.probabilities(oq, list(data.oos_test))
        oconf = oprobs.max(axis=1)
        out["oos_rejected_at_0.5"] = float((oconf < 0.5).mean())
        out["oos_auroc"] = _auroc(conf, oconf)
    return out


def _datasets(args: argparse.Namespace) -> list[IntentData]:
    from voicebot.modelhub.download import DownloadError

    found: list[IntentData] = []
    for pinned, given, load, where in (
            (BANKING77, args.banking77_dir, load_banking77, "banking77"),
            (CLINC150, args.clinc_json, load_clinc, "clinc150_data_full.json")):
        if given is not None:
            found.append(load(given))
            continue
        try:
            root = ensure_files(pinned, args.data_dir, download=not args.no_download)
        except (DownloadError, FileNotFoundError) as exc:
            print(f"skipping {pinned.name}: {exc}", file=sys.stderr)
            continue
        found.append(load(root / where))
    found.append(synthetic())
    return found


def _worker(args: argparse.Namespace, examples: int, cache: Path | None) -> dict[str, Any]:
    cmd = ["taskset", "-c", str(args.cpu), sys.executable, "-m", "bench.nlu_worker",
           "--examples", str(examples), "--models-dir", str(args.models_dir)]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> int:
    from voicebot.nlu.classifier import EmbeddingIntentClassifier
    from voicebot.nlu.embedder import MiniLmEmbedder
    from voicebot.nlu.embedding_cache import EmbeddingCache

    work = Path("out/nlu")
    work.mkdir(parents=True, exist_ok=True)
    embedder = MiniLmEmbedder.from_cache(args.models_dir)
    cache = EmbeddingCache(work / "bench-embeddings.sqlite3", model_key=embedder.cache_key)
    clf = EmbeddingIntentClassifier(embedder=embedder, cache=cache)
    report: dict[str, Any] = {"date": datetime.date.today().isoformat(),
                              "cpu": platform.processor() or platform.machine(),
                              "cores": os.cpu_count(), "model": "MiniLM-L6 int8 (REAL)",
                              "datasets": {}, "workers": []}
    for data in _datasets(args):
        by_intent: dict[str, list[tuple[str, str]]] = {}
        for row in data.train:
            by_intent.setdefault(row[1], []).append(row)
        shots = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            train = [rows[i] for rows in by_intent.values()
                     for i in rng.choice(len(rows), min(10, len(rows)), replace=False)]
            shots.append(_evaluate(clf, data, train, f"{data.name}-10-{seed}"))
        full = _evaluate(clf, data, list(data.train), f"{data.name}-all")
        report["datasets"][data.name] = {"kind": data.kind, "licence": data.licence,
                                         "intents": len(by_intent), "test": len(data.test),
                                         "oos_test": len(data.oos_test),
                                         "ten_shot": shots, "all": full}
        print(json.dumps({data.name: report["datasets"][data.name]}, indent=1))
    fresh = work / "worker-embeddings.sqlite3"
    fresh.unlink(missing_ok=True)
    for examples, cached in ((770, None), (1000, None), (770, fresh), (770, fresh)):
        report["workers"].append(_worker(args, examples, cached))
        print(json.dumps(report["workers"][-1]))
    from bench.nlu_report import write_report

    write_report(report, args.out_dir)
    return 0

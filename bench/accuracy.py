"""``python -m bench accuracy`` / ``make bench-accuracy``: accuracy on REAL human speech.

For each stack (a server config file, :mod:`bench.accuracy_stacks`):

* ``wer-asterisk`` / ``wer-librivox``: word error rate on ~550 recorded Asterisk
  telephone prompts and on the five LibriVox clips of ``pocketsphinx-testdata``,
  each through the server's own codec / resampling / VAD / endpointing code at
  8 kHz μ-law (:mod:`bench.accuracy_wer`), engines built from the config;
* ``cards``: 16 balance calls whose card number is said with recorded human digits,
  against a real ``voicebot serve`` pinned to ``--server-cpu``;
* ``intents``: single-turn calls with held-out phrasings, spoken by espeak-ng and
  by Piper ``en_US-joe-medium`` (synthetic caller voices), same server.

Each measure's result is kept in ``--work-dir/<stack>/<measure>.json`` and the
report (``docs/benchmarks/accuracy.md`` + ``.json``) is rebuilt from every result
there, so stacks and measures can be run one at a time.  Speech data: Debian
packages (:mod:`bench.speechdata`, ``APT_INSTALL``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtests.machine import cpu_model
from server.config import REPO_ROOT, load_config
from voicebot.engines.base import Pcm
from voicebot.engines.registry import EngineOptions, build_engine

from .accuracy_calls import (
    CardCall,
    card_calls,
    intent_calls,
    make_cards,
    serve,
    speak,
)
from .accuracy_report import render_markdown
from .accuracy_stacks import (
    Stack,
    endpoint_config,
    load_stack,
    parse_overrides,
    served_config_text,
)
from .accuracy_wer import LINE, phone_line_frames, rescore, run_wer, transcribe
from .calls import OUT_OF_DOMAIN, PHRASINGS
from .speechdata import Recording, asterisk_prompts, librivox_clips

__all__ = ["DEFAULT_STACKS", "MEASURES", "main", "register", "run", "run_accuracy_bench"]

log = logging.getLogger(__name__)

MEASURES = ("wer-asterisk", "wer-librivox", "cards", "intents")
DEFAULT_STACKS = ("lite", "default", "default-30s", "reference", "reference-30s")
ESPEAK_VOICE = "espeak-ng en-us 165 wpm"


def _phrases(limit: int | None) -> tuple[tuple[str, str], ...]:
    """The held-out phrasings, then the out-of-domain ones (the first ``limit`` of each)."""
    return (*PHRASINGS[:limit], *OUT_OF_DOMAIN[:limit])


def _caller_audio(caller_voice: str, limit: int | None) -> dict[str, list[Pcm]]:
    """The intent phrasings (and the out-of-domain ones) in each caller voice, 8 kHz."""
    defaults = load_config(None)
    espeak = build_engine("tts", "espeak", EngineOptions())
    piper = build_engine("tts", "piper", EngineOptions(
        models_dir=defaults.models_dir, manifest=defaults.manifest,
        options={"voice": caller_voice}))
    texts = [t for t, _ in _phrases(limit)]
    piper_label = "piper " + Path(caller_voice).name.removesuffix(".onnx")
    return {ESPEAK_VOICE: [speak(espeak, t) for t in texts],
            piper_label: [speak(piper, t) for t in texts]}


def _stack_meta(stack: Stack) -> dict[str, Any]:
    path = stack.config_path
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    return {"stack": stack.name, "label": stack.label, "config": str(shown),
            "engines": stack.models(), "overrides": stack.overrides}


def _code_revision() -> str:
    """``git describe --always --dirty`` of the checkout (read only), or ``unknown``."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _decoder_stats(transcriber: Any) -> dict[str, Any] | None:
    """Whisper's decode counters (utterance-window fallbacks, degenerate results)."""
    stats = getattr(transcriber, "stats", None)
    if stats is None or not all(hasattr(stats, k) for k in ("decodes", "fallbacks")):
        return None
    return {"decodes": stats.decodes, "fallbacks": dict(stats.fallbacks),
            "degenerate": getattr(stats, "degenerate", None)}


def _run_wer(stack: Stack, measures: Sequence[str], limit: int | None) -> dict[str, Any]:
    detector: Any = stack.build("vad")
    transcriber: Any = stack.build("asr")
    endpoint = endpoint_config(stack.scenario())
    synthetic = bool(getattr(transcriber, "synthetic", False))
    out: dict[str, Any] = {}
    corpora: dict[str, Callable[[], tuple[Recording, ...]]] = {
        "wer-asterisk": asterisk_prompts, "wer-librivox": librivox_clips}
    for measure in (m for m in measures if m in corpora):
        recordings = corpora[measure]()[:limit]
        log.info("%s: %s over %d recordings", stack.name, measure, len(recordings))
        before = _decoder_stats(transcriber)
        result = run_wer(recordings, detector=detector, transcriber=transcriber,
                         endpoint=endpoint, line=LINE)
        after = _decoder_stats(transcriber)
        if before is not None and after is not None:
            result["decoder"] = {
                "decodes": after["decodes"] - before["decodes"],
                "fallbacks": {k: v - before["fallbacks"].get(k, 0)
                              for k, v in after["fallbacks"].items()
                              if v - before["fallbacks"].get(k, 0)},
                "degenerate": None if after["degenerate"] is None
                else after["degenerate"] - before["degenerate"]}
        out[measure] = {**result, "asr_synthetic": synthetic,
                        "cpus": sorted(os.sched_getaffinity(0))}
    return out


FRONT_PHASES = 8


def front_splits(stack: Stack, calls: Sequence[CardCall]) -> list[int]:
    """In how many of :data:`FRONT_PHASES` alignments the server's front (Silero VAD + the
    scenario's endpointing for a digit string) cuts each card's digits into more than one utterance.

    The card is put on the line after 300, 304, ... 328 ms of silence: where the 32 ms
    VAD windows fall in the speech changes the probabilities near the thresholds, and
    in a live call that alignment is whatever the caller's timing makes it.  A card
    cut apart becomes several turns: the slot rejects the first piece."""
    detector: Any = stack.build("vad")
    endpoint = endpoint_config(stack.scenario())  # as while the card number is asked for:
    endpoint = replace(endpoint, min_silence_ms=endpoint.digits_min_silence_ms)
    splits = []
    for call in calls:
        cut = 0
        for phase in range(FRONT_PHASES):
            line = replace(LINE, lead_ms=LINE.lead_ms + 4 * phase)
            frames = phone_line_frames(call.audio, line.sample_rate_hz, line=line)
            heard = transcribe(frames, detector=detector, transcriber=None,
                               endpoint=endpoint, line=line)
            cut += len(heard.texts) > 1
        splits.append(cut)
    return splits


def _run_calls(stack: Stack, measures: Sequence[str], *, work_dir: Path, server_cpu: int | None,
               port: int, concurrency: int, cards: int, seed: int, limit: int | None,
               voices: Mapping[str, list[Pcm]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    config = stack.config_path
    if stack.overrides:  # a copy with the overrides applied
        config = work_dir / stack.name / "served.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(served_config_text(stack))
    with serve(config, work_dir=work_dir / stack.name, port=port, cpu=server_cpu,
               dialogs=concurrency + 1) as served:
        pinning = {"server": served.pinning, "served_config": str(config),
                   "client": f"bench pid {os.getpid()} on CPUs "
                             f"{','.join(map(str, sorted(os.sched_getaffinity(0))))}"}
        if "cards" in measures:
            espeak = build_engine("tts", "espeak", EngineOptions())
            calls = make_cards(cards, seed=seed)
            log.info("%s: %d card-number calls", stack.name, cards)
            out["cards"] = {**card_calls(served.url, calls,
                                         balance_request=speak(espeak, "what is my balance"),
                                         concurrency=concurrency,
                                         front_splits=front_splits(stack, calls)),
                            "seed": seed, "front_phases": FRONT_PHASES, "pinning": pinning}
        if "intents" in measures and voices is not None:
            phrases = _phrases(limit)
            held = len(PHRASINGS[:limit])
            by_voice: dict[str, Any] = {}
            for voice, audio in voices.items():
                log.info("%s: %d intent calls, voice %s", stack.name, len(phrases), voice)
                result = intent_calls(served.url, phrases, audio, concurrency=concurrency)
                rows = result.pop("rows")
                held_out, ood = rows[:held], rows[held:]
                by_voice[voice] = {
                    **result,
                    "intents": {"correct": sum(r["correct"] for r in held_out),
                                "total": len(held_out), "rows": held_out},
                    "out_of_domain": {"correct": sum(r["correct"] for r in ood),
                                      "total": len(ood), "rows": ood}}
            out["intents"] = {"voices": by_voice, "pinning": pinning}
    return out


def run_accuracy_bench(*, stacks: Sequence[str] = DEFAULT_STACKS,
                       measures: Sequence[str] = MEASURES,
                       out_dir: Path = Path("docs/benchmarks"),
                       work_dir: Path = Path("out/accuracy"),
                       server_cpu: int | None = 0, port: int = 8791,
                       overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                       caller_voice: str = "en_US-joe-medium", cards: int = 16,
                       seed: int = 4217, concurrency: int = 3, limit: int | None = None,
                       name: str = "accuracy") -> dict[str, Any]:
    """Run ``measures`` for each of ``stacks``; then rebuild the report from every
    result under ``work_dir``.  ``overrides[stack]`` replaces engine options
    (``{"asr": {"model": "/path"}}``); ``limit`` keeps the first N recordings of each
    corpus and the first N phrasings of each intent set (smoke tests).  Returns the
    report's data."""
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; known: {', '.join(MEASURES)}")
    voices = _caller_audio(caller_voice, limit) if "intents" in measures else None
    for stack_name in stacks:
        stack = load_stack(stack_name, overrides=(overrides or {}).get(stack_name))
        results: dict[str, Any] = {}
        started = time.perf_counter()
        stack.install_models()
        results.update(_run_wer(stack, measures, limit))
        if {"cards", "intents"} & set(measures):
            results.update(_run_calls(stack, measures, work_dir=work_dir, server_cpu=server_cpu,
                                      port=port, concurrency=concurrency, cards=cards,
                                      seed=seed, limit=limit, voices=voices))
        folder = work_dir / stack.name
        folder.mkdir(parents=True, exist_ok=True)
        date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        code = _code_revision()
        for measure, result in results.items():
            part = {"meta": {**_stack_meta(stack), "date": date, "code": code},
                    "result": result}
            (folder / f"{measure}.json").write_text(json.dumps(part, indent=1) + "\n")
        log.info("%s: %s done in %.0f s", stack.name, ", ".join(results),
                 time.perf_counter() - started)
    return write_report(work_dir=work_dir, out_dir=out_dir, name=name)


def write_report(*, work_dir: Path, out_dir: Path, name: str = "accuracy") -> dict[str, Any]:
    """Merge every ``work_dir/<stack>/<measure>.json`` into ``out_dir/<name>.md/.json``;
    the WER results are scored again from their texts (the normaliser may have changed).
    Returns the whole report; the JSON file keeps only the WER rows with errors."""
    stacks: dict[str, Any] = {}
    for part in sorted(work_dir.glob("*/*.json")):
        data = json.loads(part.read_text())
        entry = stacks.setdefault(part.parent.name, {"meta": data["meta"], "measures": {}})
        result = rescore(data["result"]) if part.stem.startswith("wer-") else data["result"]
        entry["measures"][part.stem] = {"date": data["meta"]["date"],
                                        "code": data["meta"].get("code", "unknown"), **result}
    order = {s: i for i, s in enumerate(DEFAULT_STACKS)}
    voices = dict.fromkeys(v for s in stacks.values()
                           for v in s["measures"].get("intents", {}).get("voices", {}))
    report = {
        "meta": {"cpu": cpu_model(), "generated": dt.datetime.now(dt.UTC).isoformat(
            timespec="seconds"), "line": LINE.label, "caller_voices": list(voices)},
        "stacks": dict(sorted(stacks.items(), key=lambda kv: order.get(kv[0], 99))),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(render_markdown(report))
    (out_dir / f"{name}.json").write_text(json.dumps(_slim(report), indent=1) + "\n")
    return report


def _slim(report: dict[str, Any]) -> dict[str, Any]:
    """The report for docs/: WER rows only where the ASR erred, without the reference
    text (it is in the Debian package, by id); every row stays in ``work_dir``."""
    stacks: dict[str, Any] = {}
    for name, stack in report["stacks"].items():
        measures = {}
        for key, m in stack["measures"].items():
            if key.startswith("wer-"):
                rows = [{**{k: v for k, v in r.items() if k != "reference"},
                         "heard": r["heard"][:200]} for r in m["rows"] if r["errors"]]
                m = {**m, "rows": rows,
                     "rows_kept": "recordings with errors; no reference; heard cut at 200"}
            measures[key] = m
        stacks[name] = {**stack, "measures": measures}
    return {**report, "stacks": stacks}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *,
             name: str = "accuracy") -> argparse.ArgumentParser:
    """Add the ``accuracy`` command (e.g. under ``python -m bench``); ``run`` runs it."""
    parser = subparsers.add_parser(name, help="accuracy on real human speech (WER, card "
                                   "numbers, intents); docs/benchmarks/accuracy.md")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", action="append", dest="stacks", default=None,
                        help="a stack name (server/configs/bench-NAME.yaml) or config path; "
                             f"repeatable (default: {' '.join(DEFAULT_STACKS)})")
    parser.add_argument("--measure", action="append", dest="measures", default=None,
                        choices=MEASURES, help="repeatable (default: all)")
    parser.add_argument("--set", action="append", dest="overrides", default=None,
                        metavar="KIND.OPTION=VALUE",
                        help="override an engine option of every stack run, e.g. "
                             "asr.model=/path/to/whisper-tiny.en (shown in the report)")
    parser.add_argument("--caller-voice", default="en_US-joe-medium",
                        help="the Piper caller voice: a manifest name or an .onnx path")
    parser.add_argument("--server-cpu", type=int, default=0,
                        help="pin the served stack to this CPU (-1: no pinning)")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--cards", type=int, default=16, help="card-number calls")
    parser.add_argument("--seed", type=int, default=4217, help="seed of the card numbers")
    parser.add_argument("--concurrency", type=int, default=3, help="calls at once")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N recordings of each corpus and N phrasings of each "
                             "intent set only (smoke runs)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--work-dir", type=Path, default=Path("out/accuracy"))
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report from --work-dir without measuring")


def run(args: argparse.Namespace) -> int:
    """Run ``python -m bench accuracy`` with parsed ``args``."""
    if args.report_only:
        write_report(work_dir=args.work_dir, out_dir=args.out_dir)
        return 0
    stacks = args.stacks or list(DEFAULT_STACKS)
    overrides = parse_overrides(args.overrides)
    run_accuracy_bench(
        stacks=stacks, measures=args.measures or MEASURES, out_dir=args.out_dir,
        work_dir=args.work_dir, server_cpu=None if args.server_cpu < 0 else args.server_cpu,
        port=args.port, overrides={s: overrides for s in stacks},
        caller_voice=args.caller_voice, cards=args.cards, seed=args.seed,
        concurrency=args.concurrency, limit=args.limit)
    print((args.out_dir / "accuracy.md").read_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.accuracy``: the same as ``python -m bench accuracy``."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("faster_whisper", "voicebot"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``python -m bench turns``: build (or reuse) the caller turns, replay every policy.

  python -m bench turns                     # every built-in policy, all voices, both lines
  python -m bench turns --line wide --no-turn-model   # silence curve + session-today only
  python -m bench turns --policy pkg.mod:policies   # plus policies from elsewhere
  python -m bench turns --build-only        # just build and cache the set

Built in: the silence curve, ``session-today`` and the end-of-turn policy with the
REAL Smart Turn v3.2 (:mod:`bench.turns_policies`; ``--no-turn-model`` leaves them
out).  ``--line wide,phone``: every policy on the 16 kHz clips, then those
``--line-policies`` names on the clips through an 8 kHz μ-law line (named
``…@phone``).  ``--policy MODULE:NAME`` names a :class:`bench.turns.PolicySpec`, a sequence of them,
or a callable without arguments returning either (another end-of-turn policy, the
Smart Turn engine).  Writes ``<out-dir>/<name>.md`` and ``.png``; every outcome and
summary goes to ``<cache-dir>/<key>/<name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import logging
import os
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from loadtests.machine import cpu_model
from voicebot.errors import ConfigError

from .turns import PolicySpec, TurnOutcome, run_policies, session_today, silence_rule
from .turns_data import DEFAULT_SEED, load_turns
from .turns_notes import notes_markdown
from .turns_phone import line_specs, on_phone
from .turns_policies import SMART_TURN_MS, TurnModelAnswers, eot_policies
from .turns_report import plot, report_markdown, summarize
from .turns_voices import ALLISON, ESPEAK, PIPER
from .turns_whisper import load_whisper, whisper_policies

__all__ = ["DEFAULT_SILENCE_MS", "LINES", "LINE_POLICIES", "add_arguments", "load_policies",
           "register", "run"]

log = logging.getLogger(__name__)

DEFAULT_SILENCE_MS = (200, 300, 400, 500, 600, 800, 1000, 1200)
LINES = ("wide", "phone")
LINE_POLICIES = ("silence-500", "session-today", "smart-turn", "smart-turn-t*",
                 "smart-turn+expect", "smart-turn+expect-t*", "smart-turn+expect-a*",
                 "silence-500+expect", "*-whisper")
"""The policies replayed on the lines after the first (``fnmatch`` patterns)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "turns", help="turn-taking: cut-offs and end-of-turn latency of each policy on "
        "caller turns with and without mid-turn pauses (docs/benchmarks/turn-taking.md)")
    add_arguments(parser)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cost(text: str) -> float | None:
    return None if text == "measured" else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=Path("out/turns"),
                        help="where the built set is cached (default: out/turns)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--name", default="turn-taking", help="report file name (no suffix)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--voices", type=_csv, default=[ESPEAK, PIPER, ALLISON],
                        help=f"comma-separated, of {ESPEAK},{PIPER},{ALLISON}")
    parser.add_argument("--silence-ms", type=lambda t: [int(v) for v in _csv(t)],
                        default=list(DEFAULT_SILENCE_MS),
                        help="the silence rule's thresholds (the baseline curve)")
    parser.add_argument("--policy", action="append", default=[], metavar="MODULE:NAME",
                        help="more policies (a PolicySpec, a list, or a callable)")
    parser.add_argument("--no-turn-model", action="store_true",
                        help="leave out the policies that need the Smart Turn model")
    parser.add_argument("--turn-model-ms", type=_cost, default=SMART_TURN_MS,
                        help=f"when the model's verdict is back after the request: ms "
                        f"(default {SMART_TURN_MS:g}) or 'measured' (each call's own time)")
    parser.add_argument("--no-whisper", action="store_true",
                        help="leave out the policies on the REAL Whisper's partial transcripts")
    parser.add_argument("--line", type=_csv, default=list(LINES),
                        help="wide (16 kHz clips) and/or phone (through 8 kHz mu-law and back); "
                        "the first line replays every policy, the others --line-policies")
    parser.add_argument("--line-policies", type=_csv, default=list(LINE_POLICIES),
                        help="policies (fnmatch patterns) replayed on the lines after the first")
    parser.add_argument("--config", type=Path, default=None, help="for models_dir, manifest")
    parser.add_argument("--rebuild", action="store_true", help="build the set even if cached")
    parser.add_argument("--build-only", action="store_true", help="build the set, replay nothing")


def load_policies(refs: Sequence[str]) -> list[PolicySpec]:
    """The policies ``MODULE:NAME`` references name."""
    found: list[PolicySpec] = []
    for ref in refs:
        module, _, attr = ref.partition(":")
        if not module or not attr:
            raise ConfigError(f"--policy wants MODULE:NAME, got {ref!r}")
        try:
            value: Any = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--policy {ref}: {exc}") from exc
        if callable(value) and not isinstance(value, PolicySpec):
            value = value()
        specs = [value] if isinstance(value, PolicySpec) else list(value)
        if not all(isinstance(s, PolicySpec) for s in specs):
            raise ConfigError(f"--policy {ref} is not a PolicySpec or a list of them")
        found += specs
    return found


def run(args: argparse.Namespace) -> int:
    from server.config import load_config
    from voicebot.engines.registry import EngineOptions, build_engine

    config = load_config(args.config)
    unknown = set(args.voices) - {ESPEAK, PIPER, ALLISON}
    if unknown:
        raise ConfigError(f"unknown voices {sorted(unknown)}")
    if not args.line or set(args.line) - set(LINES):
        raise ConfigError(f"--line takes {','.join(LINES)}, got {args.line}")
    model = None if args.no_turn_model else TurnModelAnswers(build_engine(
        "turn", "smart-turn", EngineOptions(models_dir=config.models_dir,
                                            manifest=config.manifest)),
        cost_ms=args.turn_model_ms)
    whisper = (None if model is None or args.no_whisper
               else load_whisper(config.models_dir, config.manifest))
    policies = [*(silence_rule(ms) for ms in args.silence_ms), session_today(),
                *(eot_policies(model) if model else ()),
                *(whisper_policies(model, whisper) if model and whisper else ()),
                *load_policies(args.policy)]
    replayed = [line_specs(policies if number == 0 else [
        p for p in policies if any(fnmatch(p.name, pattern) for pattern in args.line_policies)],
        line) for number, line in enumerate(args.line)]
    names = [p.name for specs in replayed for p in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two policies share a name: {names}")
    turns = load_turns(args.cache_dir, models_dir=config.models_dir, manifest=config.manifest,
                       seed=args.seed, voices=args.voices, rebuild=args.rebuild)
    print(f"{len(turns.clips)} turns in {turns.folder}")
    if args.build_only:
        return 0
    detector = build_engine("vad", "silero", EngineOptions(
        models_dir=config.models_dir, manifest=config.manifest, options={"model": "silero-vad"}))
    load_before = os.getloadavg()[0]
    outcomes: list[TurnOutcome] = []
    for line, specs in zip(args.line, replayed, strict=True):
        log.info("replaying %d policies on the %s line", len(specs), line)
        clips = turns.clips if line == "wide" else tuple(on_phone(c) for c in turns.clips)
        outcomes += run_policies(clips, detector, specs)
    load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
    every = [p for specs in replayed for p in specs]
    summaries = summarize(outcomes, turns.clips, every)
    meta = {"date": dt.date.today().isoformat(), "cpu": cpu_model(), "load": load,
            "key": turns.key, "seed": args.seed, "name": args.name, "lines": args.line,
            "turn_model_ms": args.turn_model_ms,
            "model_calls": model.calls if model else 0,
            "model_p50_ms": model.quantile_ms(50) if model else None,
            "whisper_calls": whisper.calls if whisper else 0,
            "whisper_mean_ms": whisper.mean_ms if whisper else None}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = report_markdown(summaries, turns.clips, meta)
    plots: dict[str, str] = {}  # line -> its plot's file name
    for number, (line, specs) in enumerate(zip(args.line, replayed, strict=True)):
        plots[line] = f"{args.name}.png" if number == 0 else f"{args.name}-{line}.png"
        own = {p.name for p in specs}
        plot([s for s in summaries if s.policy in own], args.out_dir / plots[line],
             title=f"turn-taking, {len(turns.clips)} turns, Silero VAD, {line} line, "
             f"{meta['date']}")
    if model is not None:
        report += "\n" + notes_markdown(model, lines=args.line, plots=plots, whisper=(
            None if whisper is None else (whisper.calls, whisper.mean_ms)))
    (args.out_dir / f"{args.name}.md").write_text(report)
    (turns.folder / f"{args.name}.json").write_text(json.dumps({
        "meta": meta, "summaries": [dataclasses.asdict(s) for s in summaries],
        "outcomes": [dataclasses.asdict(o) for o in outcomes]}, indent=1, default=str) + "\n")
    for s in summaries:
        print(f"{s.policy:>24}: cut off {s.cut_offs}/{s.paused} paused turns "
              f"({s.digits_cut_offs}/{s.digits_paused} digit strings), latency p50 "
              f"{s.latency_p50_ms:.0f} ms p95 {s.latency_p95_ms:.0f} ms")
    print(f"report: {args.out_dir / (args.name + '.md')}")
    return 0

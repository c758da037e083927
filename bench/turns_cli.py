"""``python -m bench turns``: build (or reuse) the caller turns, replay every policy.

  python -m bench turns                     # silence curve + session-today, all voices
  python -m bench turns --policy pkg.mod:policies   # plus policies from elsewhere
  python -m bench turns --build-only        # just build and cache the set

``--policy MODULE:NAME`` names a :class:`bench.turns.PolicySpec`, a sequence of them,
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
from pathlib import Path
from typing import Any

from loadtests.machine import cpu_model
from voicebot.errors import ConfigError

from .turns import PolicySpec, run_policies, session_today, silence_rule
from .turns_data import DEFAULT_SEED, load_turns
from .turns_report import plot, report_markdown, summarize
from .turns_voices import ALLISON, ESPEAK, PIPER

__all__ = ["DEFAULT_SILENCE_MS", "add_arguments", "load_policies", "register", "run"]

log = logging.getLogger(__name__)

DEFAULT_SILENCE_MS = (200, 300, 400, 500, 600, 800, 1000, 1200)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "turns", help="turn-taking: cut-offs and end-of-turn latency of each policy on "
        "caller turns with and without mid-turn pauses (docs/benchmarks/turn-taking.md)")
    add_arguments(parser)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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
    policies = [*(silence_rule(ms) for ms in args.silence_ms), session_today(),
                *load_policies(args.policy)]
    names = [p.name for p in policies]
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
    outcomes = run_policies(turns.clips, detector, policies)
    load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
    summaries = summarize(outcomes, turns.clips, policies)
    meta = {"date": dt.date.today().isoformat(), "cpu": cpu_model(), "load": load,
            "key": turns.key, "seed": args.seed, "name": args.name}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.md").write_text(report_markdown(summaries, turns.clips, meta))
    plot(summaries, args.out_dir / f"{args.name}.png",
         title=f"turn-taking, {len(turns.clips)} turns, Silero VAD, {meta['date']}")
    (turns.folder / f"{args.name}.json").write_text(json.dumps({
        "meta": meta, "summaries": [dataclasses.asdict(s) for s in summaries],
        "outcomes": [dataclasses.asdict(o) for o in outcomes]}, indent=1, default=str) + "\n")
    for s in summaries:
        print(f"{s.policy:>16}: cut off {s.cut_offs}/{s.paused} paused turns "
              f"({s.digits_cut_offs}/{s.digits_paused} digit strings), latency p50 "
              f"{s.latency_p50_ms:.0f} ms p95 {s.latency_p95_ms:.0f} ms")
    print(f"report: {args.out_dir / (args.name + '.md')}")
    return 0

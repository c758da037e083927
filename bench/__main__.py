"""``python -m bench``: the repository's benchmarks and the load tests' caller audio.

  python -m bench calls          turn latency and intent accuracy against a running server
  python -m bench engines        each engine pinned to one core, one thread
  python -m bench accuracy       accuracy on real human speech (docs/benchmarks/accuracy.md)
  python -m bench whisper-digits Whisper on recorded digit strings (its own options)
  python -m bench caller-audio   speak a scenario's phrasebook (loadtests/audio for bank_card)
  python -m bench turns          turn-taking: cut-offs and end-of-turn latency per policy
  python -m bench nlu            intents on many-intent data: calibration, load, latency
  python -m bench synth-model    build a synthetic Whisper (random weights, real layout)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from voicebot.errors import VoicebotError

__all__ = ["SYNTH_NAMES", "main"]

SYNTH_NAMES = ("whisper-tiny", "whisper-base", "whisper-small")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    calls = sub.add_parser("calls", help="turn latency and intent accuracy against a "
                           "running server")
    calls.add_argument("--url", default="ws://127.0.0.1:8765")
    calls.add_argument("--repeat", type=int, default=2, help="rounds of the demo calls")
    calls.add_argument("--server-pid", type=int, default=None, help="to report its pinning")
    calls.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    calls.add_argument("--name", default="first-call", help="report file name (no suffix)")
    calls.add_argument("--stack", default=None, help="models label for the report")
    calls.add_argument("--calls-at-once", type=int, default=1,
                       help="concurrent copies of each demo call in the latency runs")
    calls.add_argument("--latency-only", action="store_true",
                       help="skip intent accuracy (for synthetic models)")
    engines = sub.add_parser("engines", help="each engine pinned to one core, one thread")
    engines.add_argument("--cpu", type=int, default=1, help="the core to pin to")
    engines.add_argument("--quick", action="store_true", help="one pass per case")
    engines.add_argument("--config", type=Path, default=None, help="for models_dir")
    engines.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    from .accuracy import register as register_accuracy

    register_accuracy(sub)
    from .turns_cli import register as register_turns

    register_turns(sub)
    from .nlu import register as register_nlu

    register_nlu(sub)
    sub.add_parser("whisper-digits", add_help=False,
                   help="Whisper on recorded digit strings: python -m bench whisper-digits -h")
    audio = sub.add_parser("caller-audio", help="speak a scenario's phrasebook and slot answers "
                           "into the load tests' caller audio")
    audio.add_argument("--scenario", type=Path, default=Path("scenarios/bank_card.yaml"))
    audio.add_argument("--out", type=Path, default=None,
                       help="default: loadtests/audio for bank_card, else out/caller-audio/NAME")
    audio.add_argument("--check", action="store_true",
                       help="regenerate in a temporary folder and compare with --out")
    synth = sub.add_parser("synth-model", help="build a synthetic Whisper model (random "
                           "weights, real layer sizes and tokenizer) for cost measurements")
    synth.add_argument("name", choices=SYNTH_NAMES)
    synth.add_argument("--out", type=Path, default=None,
                       help="output folder (default: models_dir/synthetic/NAME)")
    synth.add_argument("--config", type=Path, default=None, help="for models_dir")
    return parser


def _synth_model(args: argparse.Namespace) -> int:
    from server.config import load_config
    from voicebot.whisper.synthetic import build_synthetic_whisper

    out = args.out or load_config(args.config).models_dir / "synthetic" / args.name
    print(build_synthetic_whisper(args.name, out))
    return 0


def _calls(args: argparse.Namespace) -> int:
    from .calls import DEFAULT_STACK, run_bench

    run_bench(url=args.url, repeat=args.repeat, out_dir=args.out_dir,
              server_pid=args.server_pid, stack=args.stack or DEFAULT_STACK, name=args.name,
              accuracy=not args.latency_only, calls_at_once=args.calls_at_once)
    return 0


def _engines(args: argparse.Namespace) -> int:
    from server.config import load_config

    from .engines import run_engine_bench

    config = load_config(args.config)
    run_engine_bench(out_dir=args.out_dir, models_dir=config.models_dir, cpu=args.cpu,
                     quick=args.quick)
    return 0


def _accuracy(args: argparse.Namespace) -> int:
    from .accuracy import run

    logging.getLogger("bench").setLevel(logging.INFO)
    return run(args)


def _turns(args: argparse.Namespace) -> int:
    from .turns_cli import run

    return run(args)


def _nlu(args: argparse.Namespace) -> int:
    from .nlu import run

    return run(args)


def _caller_audio(args: argparse.Namespace) -> int:
    from .caller_audio import build_caller_audio, check_caller_audio, default_out
    out: Path = args.out or default_out(args.scenario)
    if not args.check:
        manifest = build_caller_audio(args.scenario, out)
        print(f"{len(manifest['phrases'])} phrases written to {out}")
        return 0
    problems = check_caller_audio(args.scenario, out)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{out} is out of date: run `python -m bench caller-audio --scenario "
              f"{args.scenario} --out {out}`", file=sys.stderr)
        return 1
    print(f"{out} matches a fresh build")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["whisper-digits"]:  # its own options
        from .whisper_digits import main as whisper_digits

        return whisper_digits(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(message)s")
    handlers = {"calls": _calls, "engines": _engines, "accuracy": _accuracy,
                "caller-audio": _caller_audio, "synth-model": _synth_model, "turns": _turns,
                "nlu": _nlu}
    try:
        return handlers[args.command](args)
    except VoicebotError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The ``voicebot`` command: ``serve``, ``call``, ``simulate``, ``models``, ``token``,
``calls`` and ``check`` (validate a config and scenarios before a rollout).

Benchmarks and the load tests' caller audio are repository tools: ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicebot.errors import VoicebotError

__all__ = ["main"]

log = logging.getLogger("voicebot")


class _TurnAction(argparse.Action):
    """Collects --wav/--text/--dtmf in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from .client import CallerTurn

        turns = list(getattr(namespace, "turns", None) or [])
        turns.append(CallerTurn(kind=self.dest, value=str(values)))
        namespace.turns = turns


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the websocket server")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1; "
                       "env VOICEBOT_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8765; "
                       "env VOICEBOT_PORT)")
    serve.add_argument("--config", type=Path, default=None,
                       help="YAML configuration file, or the name of a shipped one "
                            "(server/configs: reference, reference-30s, bench-lite, ...)")
    from .stacks import DEFAULT_STACK, STACKS

    serve.add_argument("--stack", default=None, choices=tuple(STACKS),
                       help=f"engines preset (default {DEFAULT_STACK}; env VOICEBOT_STACK); "
                            "the config file's engines: section overrides pieces of it: "
                            + "; ".join(f"{s.name}: {s.description}" for s in STACKS.values())
                            .replace("%", "%%"))  # argparse formats help with %
    serve.add_argument("--no-pull", action="store_true", default=None,
                       help="refuse to start when a model of the engines is not installed "
                            "(default: pull it, printing what is pulled from where)")
    serve.add_argument("--cpus", default=None,
                       help="CPUs to run on, e.g. 0-3 (default: the process's affinity, cut "
                            "down to its cgroup CPU quota in a container)")
    serve.add_argument("--dialogs-per-core", type=int, default=None,
                       help="live dialogs per CPU before calls are refused (default 2)")
    serve.add_argument("--slo-p95-ms", type=float, default=None,
                       help="a cell whose recent p95 turn latency exceeds this takes no new "
                            "call (default 1500)")
    serve.add_argument("--device", default=None, choices=("cpu", "cuda"),
                       help="where the ASR and TTS run (default cpu; env VOICEBOT_DEVICE); "
                            "cuda: a GPU worker batches them across calls, and the server "
                            "refuses to start when CUDA is not usable (no fall-back to CPU)")
    serve.add_argument("--dialogs-per-gpu", type=int, default=None,
                       help="live dialogs the GPU takes with --device cuda (default 16)")

    call = sub.add_parser("call", help="place a test call and print one JSON line per turn")
    call.add_argument("--url", default="ws://127.0.0.1:8765")
    call.add_argument("--scenario", default=None)
    call.add_argument("--encoding", default="pcm16", choices=("pcm16", "mulaw", "alaw"))
    call.add_argument("--rate", type=int, default=16000, choices=(8000, 16000))
    call.add_argument("--wav", action=_TurnAction, help="a caller turn from a WAV file")
    call.add_argument("--text", action=_TurnAction, help="a caller turn spoken by espeak-ng")
    call.add_argument("--dtmf", action=_TurnAction, help="a caller turn typed on the keypad")
    call.add_argument("--out", type=Path, default=None, help="save all bot audio to this WAV")
    call.add_argument("--pause-ms", type=int, default=400,
                      help="caller's pause after the bot stops speaking")
    call.add_argument("--timeout-s", type=float, default=20.0, help="longest wait for a reply")
    call.add_argument("--token", default=None,
                      help="send 'Authorization: Bearer TOKEN' (or put ?token= in --url)")
    sim = sub.add_parser("simulate", help="play a telephony provider's side of a call and "
                         "print one JSON line per turn")
    sim.add_argument("provider", choices=("twilio", "telnyx", "exotel", "vonage", "asterisk",
                                          "jambonz", "freeswitch"))
    sim.add_argument("--url", default="ws://127.0.0.1:8765",
                     help="the server; /PROVIDER is appended unless --auto-detect")
    sim.add_argument("--auto-detect", action="store_true",
                     help="connect to --url as given (the server detects the provider)")
    sim.add_argument("--scenario", default=None)
    sim.add_argument("--wav", action=_TurnAction, help="a caller turn from a WAV file")
    sim.add_argument("--text", action=_TurnAction, help="a caller turn spoken by espeak-ng")
    sim.add_argument("--dtmf", action=_TurnAction, help="a caller turn typed on the keypad")
    sim.add_argument("--pause-ms", type=int, default=400,
                     help="caller's pause after the bot stops speaking")
    sim.add_argument("--timeout-s", type=float, default=20.0, help="longest wait for a reply")
    sim.add_argument("--token", default=None, help="send 'Authorization: Bearer TOKEN'")
    sim.add_argument("--twilio-auth-token-env", default=None, metavar="VAR",
                     help="sign the connection as Twilio does, with the auth token in $VAR")

    from .auth_cli import register as register_token
    from .calls_cli import register as register_calls
    from .check_cli import register as register_check
    from .models_cli import register as register_models

    register_models(sub)
    register_calls(sub)
    register_token(sub)
    register_check(sub)
    return parser


def _configure_logging(level: str, log_format: str = "text") -> None:
    """voicebot's own loggers at ``level``; third-party libraries at WARNING
    (onnxruntime's quantizer, for one, logs every tensor at INFO on the root);
    caller-supplied text escaped, or JSON lines (server/logsafe.py)."""
    from .logsafe import configure_logging

    configure_logging(level, json_lines=log_format == "json")


def _pin_process(cpus: Sequence[int]) -> None:
    """Pin every thread of this process (some libraries start threads at import), before
    any model loads: every engine thread created later inherits the mask."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def _serve(args: argparse.Namespace) -> int:
    from .app import load_app
    from .config import load_config
    from .cpus import detect_cpus, format_cpus
    from .serving import run_server

    config = load_config(args.config, overrides={
        "host": args.host, "port": args.port, "log_level": args.log_level, "cpus": args.cpus,
        "dialogs_per_core": args.dialogs_per_core, "slo_p95_ms": args.slo_p95_ms,
        "stack": args.stack, "pull_models": False if args.no_pull else None,
        "device": args.device, "dialogs_per_gpu": args.dialogs_per_gpu,
    })
    _configure_logging(config.log_level, config.log_format)
    detected = detect_cpus()  # before pinning: the affinity the process was given
    chosen = (detected.describe() if config.cpus == detected.cpus else
              f"CPUs {format_cpus(config.cpus)} (cpus/--cpus; else {detected.describe()})")
    _pin_process(config.cpus)
    log.info("pinned to %s; capacity %d dialogs", chosen,
             config.dialogs_per_core * len(config.cpus))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    app = load_app(config)
    runner(run_server(app))
    return 0


def _call(args: argparse.Namespace) -> int:
    from .client import CallOptions, run_call

    _configure_logging(args.log_level or "WARNING")
    turns = getattr(args, "turns", None) or []
    options = CallOptions(url=args.url, scenario=args.scenario, encoding=args.encoding,
                          sample_rate_hz=args.rate, pause_ms=args.pause_ms,
                          turn_timeout_s=args.timeout_s, token=args.token)
    return run_call(turns, options, out=args.out)


def _simulate(args: argparse.Namespace) -> int:
    from .simulate import SimOptions, run_simulation

    _configure_logging(args.log_level or "WARNING")
    twilio_token = None
    if args.twilio_auth_token_env:
        twilio_token = os.environ.get(args.twilio_auth_token_env)
        if not twilio_token:
            print(f"voicebot: ${args.twilio_auth_token_env} is not set", file=sys.stderr)
            return 2
    options = SimOptions(provider=args.provider, url=args.url, scenario=args.scenario,
                         pause_ms=args.pause_ms, turn_timeout_s=args.timeout_s,
                         auto_detect=args.auto_detect, token=args.token,
                         twilio_auth_token=twilio_token)
    return run_simulation(getattr(args, "turns", None) or [], options)


def _token(args: argparse.Namespace) -> int:
    from .auth_cli import run as run_token

    return run_token(args)


def _calls(args: argparse.Namespace) -> int:
    from .calls_cli import run_from_config
    from .config import load_config, without_auth

    _configure_logging(getattr(args, "log_level", None) or "WARNING")
    # Call records need no call credentials: the auth: section's secrets are not read.
    return run_from_config(args, load_config(args.config, env=without_auth(os.environ)))


def _check(args: argparse.Namespace) -> int:
    from .check_cli import run as run_check

    return run_check(args)


def _models(args: argparse.Namespace) -> int:
    from .models_cli import run as run_models

    _configure_logging(args.log_level or "WARNING")
    return run_models(args)


def main(argv: Sequence[str] | None = None) -> int:
    # Before numpy & co. are imported: their thread pools must not outgrow the budget
    # (engines get explicit thread counts; these cover BLAS/OpenMP pools).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # ONNX Runtime's telemetry would write a store under ~/.cache/Microsoft from every
    # process (cells inherit this environment).
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    args = _parser().parse_args(argv)
    try:
        handlers = {"serve": _serve, "call": _call, "simulate": _simulate,
                    "models": _models, "token": _token, "calls": _calls, "check": _check}
        return handlers[args.command](args)
    except VoicebotError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `voicebot calls export | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

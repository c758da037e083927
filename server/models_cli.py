"""``voicebot models``: list, pull and synthesize models.

* ``voicebot models list`` -- every model of the manifest: kind, size, installed or not, where;
* ``voicebot models pull NAME [--allow-unverified]`` -- download NAME into
  ``models_dir/NAME/`` with a progress bar on stderr (resumes an interrupted pull);
* ``voicebot models synth whisper-tiny|whisper-base|whisper-small [--out DIR]`` -- build
  a synthetic Whisper model (random weights, real layout) for tests without downloads.

Every subcommand takes ``--models-dir`` (default: the configuration's ``models_dir``),
``--manifest`` (default: the repository's ``models/manifest.yaml``) and ``--config``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from server.config import REPO_ROOT, ServerConfig, load_config
from voicebot.errors import EngineUnavailableError
from voicebot.modelhub.manifest import Manifest, load_manifest
from voicebot.modelhub.store import inspect_model, model_dir, pull

__all__ = ["DEFAULT_MANIFEST", "SYNTH_NAMES", "ProgressBar", "register", "run"]

_log = logging.getLogger(__name__)

DEFAULT_MANIFEST = REPO_ROOT / "models" / "manifest.yaml"
SYNTH_NAMES = ("whisper-tiny", "whisper-base", "whisper-small")
_MB = 1_000_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its subcommands to the ``voicebot`` subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, default=None,
                        help="where models live (default: models_dir of the configuration, "
                             "env VOICEBOT_MODELS_DIR)")
    common.add_argument("--manifest", type=Path, default=None,
                        help=f"models manifest (default {DEFAULT_MANIFEST})")
    common.add_argument("--config", type=Path, default=None, help="YAML configuration file")

    models = subparsers.add_parser("models", help="list, download and synthesize models")
    sub = models.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", parents=[common], help="every known model, installed or not")
    pull_cmd = sub.add_parser("pull", parents=[common], help="download a model of the manifest")
    pull_cmd.add_argument("name", help="a model name from `voicebot models list`")
    pull_cmd.add_argument("--allow-unverified", action="store_true",
                          help="download files the manifest gives no sha256 for")
    pull_cmd.add_argument("--timeout-s", type=float, default=30.0,
                          help="network timeout per request (default 30)")
    synth = sub.add_parser("synth", parents=[common],
                           help="build a synthetic Whisper model (random weights) for tests")
    synth.add_argument("name", choices=SYNTH_NAMES)
    synth.add_argument("--out", type=Path, default=None,
                       help="output folder (default models_dir/synthetic/NAME)")


def _format_mb(size_bytes: int) -> str:
    return f"{size_bytes / _MB:.1f} MB"


class ProgressBar:
    """``progress(bytes_done, bytes_total)`` drawn on one line: %, MB, MB/s."""

    def __init__(self, *, stream: TextIO | None = None, width: int = 30,
                 min_interval_s: float = 0.1) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._min_interval_s = min_interval_s
        self._start_s = time.monotonic()
        self._start_bytes: int | None = None
        self._last_draw_s = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._start_bytes is None:  # resumed or skipped bytes do not count toward speed
            self._start_bytes, self._start_s = done, now
        finished = total is not None and done >= total
        if not finished and now - self._last_draw_s < self._min_interval_s:
            return
        self._last_draw_s = now
        elapsed = max(now - self._start_s, 1e-6)
        rate = (done - self._start_bytes) / elapsed / _MB
        if total:
            fraction = min(done / total, 1.0)
            filled = int(fraction * self._width)
            bar = "#" * filled + "-" * (self._width - filled)
            text = (f"\r[{bar}] {fraction * 100:5.1f}%  {done / _MB:.1f}/{total / _MB:.1f} MB"
                    f"  {rate:.1f} MB/s")
        else:
            text = f"\r{done / _MB:.1f} MB  {rate:.1f} MB/s"
        self._stream.write(text)
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the progress line."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def _list(manifest: Manifest, models_dir: Path) -> int:
    rows = [("NAME", "KIND", "SIZE", "STATUS", "PATH")]
    for entry in manifest.models:
        if not entry.downloadable:
            rows.append((entry.name, entry.kind, "-", "builtin",
                         "built on first use (see manifest 'build')"))
            continue
        state = inspect_model(entry, models_dir)
        if state.complete:
            status = "installed" if state.verified else "installed (unverified)"
        elif state.path.is_dir():
            status = f"incomplete ({_format_mb(state.size_bytes)})"
        else:
            status = "not installed"
        rows.append((entry.name, entry.kind, _format_mb(entry.size_bytes), status,
                     str(state.path)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]).rstrip())
    return 0


def _pull(manifest: Manifest, models_dir: Path, args: argparse.Namespace) -> int:
    entry = manifest.get(args.name)
    target = model_dir(models_dir, entry.name)
    print(f"pulling {entry.name} ({_format_mb(entry.size_bytes)}, {entry.licence}) into "
          f"{target}", file=sys.stderr)
    bar = ProgressBar()
    try:
        folder = pull(manifest, entry.name, models_dir, progress=bar,
                      allow_unverified=args.allow_unverified, timeout_s=args.timeout_s)
    finally:
        bar.close()
    print(folder)
    return 0


def _synth(models_dir: Path, args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else models_dir / "synthetic" / args.name
    try:
        module = importlib.import_module("voicebot.whisper.synthetic")
        build = module.build_synthetic_whisper
    except (ImportError, AttributeError) as exc:
        raise EngineUnavailableError(f"the synthetic Whisper builder is not available: "
                                     f"{exc}") from exc
    result = build(args.name, out)
    print(result if result is not None else out)
    return 0


def run(args: argparse.Namespace, config: ServerConfig | None = None) -> int:
    """Run ``voicebot models ...``; ``config`` defaults to ``load_config(args.config)``."""
    if config is None:
        config = load_config(getattr(args, "config", None))
    models_dir = args.models_dir if args.models_dir is not None else config.models_dir
    if args.models_command == "synth":
        return _synth(models_dir, args)
    manifest = load_manifest(args.manifest if args.manifest is not None else DEFAULT_MANIFEST)
    if args.models_command == "list":
        return _list(manifest, models_dir)
    if args.models_command == "pull":
        return _pull(manifest, models_dir, args)
    raise AssertionError(f"unknown models command {args.models_command!r}")

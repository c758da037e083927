"""``voicebot token``: mint signed expiring call tokens, make new secrets.

* ``voicebot token mint --key-id ID --path /native --ttl-s 3600 [--key-env VAR |
  --key-file PATH] [--url wss://bot.example.com]`` -- print a token for ``?token=`` on
  that path (with ``--url``: the whole URL). The key is read from the environment
  variable (default ``VOICEBOT_TOKEN_KEY``) or the file, never from the command line;
  it must be the secret of ``auth.token_keys`` entry ``ID`` on the server.
* ``voicebot token new-secret [--bytes 32]`` -- print a random URL-safe secret (for a
  signing key, a bearer token or the admin token).

See docs/security.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from voicebot.errors import ConfigError

from .auth import DETECT, endpoint_for_path
from .auth_config import MIN_SECRET_CHARS
from .auth_schemes import mint_token

__all__ = ["DEFAULT_KEY_ENV", "register", "run"]

DEFAULT_KEY_ENV = "VOICEBOT_TOKEN_KEY"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token`` and its subcommands to the ``voicebot`` subparsers."""
    token = subparsers.add_parser("token", help="mint call tokens, make new secrets")
    sub = token.add_subparsers(dest="token_command", required=True)
    mint = sub.add_parser("mint", help="print a signed expiring token for ?token=")
    mint.add_argument("--key-id", required=True, help="the id of an auth.token_keys entry")
    mint.add_argument("--path", required=True,
                      help="the endpoint the token opens (e.g. /native, /jambonz, /)")
    mint.add_argument("--ttl-s", type=float, default=3600.0,
                      help="seconds until the token expires (default 3600)")
    source = mint.add_mutually_exclusive_group()
    source.add_argument("--key-env", default=None,
                        help=f"environment variable holding the key (default {DEFAULT_KEY_ENV})")
    source.add_argument("--key-file", type=Path, default=None, help="file holding the key")
    mint.add_argument("--url", default=None,
                      help="print the whole URL: this base (wss://host[:port]) + path + ?token=")
    new = sub.add_parser("new-secret", help="print a random URL-safe secret")
    new.add_argument("--bytes", type=int, default=32, help="random bytes (default 32)")


def _read_key(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.key_file is not None:
        try:
            key = Path(args.key_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ConfigError(f"cannot read key file {args.key_file}: {why}") from None
        where = f"key file {args.key_file}"
    else:
        var = args.key_env or DEFAULT_KEY_ENV
        if var not in env:
            raise ConfigError(f"environment variable {var} is not set (or use --key-file)")
        key, where = env[var].rstrip("\r\n"), f"environment variable {var}"
    if len(key) < MIN_SECRET_CHARS:
        raise ConfigError(f"the key in {where} is shorter than {MIN_SECRET_CHARS} characters")
    return key


def _mint(args: argparse.Namespace, env: Mapping[str, str], now_s: float, out: TextIO) -> int:
    name = endpoint_for_path(args.path)
    if name is None:
        raise ConfigError(f"{args.path!r} is not a call endpoint path (e.g. /native)")
    if not args.ttl_s > 0:
        raise ConfigError("--ttl-s must be positive")
    path = DETECT if name == DETECT else f"/{name}"
    try:
        token = mint_token(args.key_id, _read_key(args, env), path, now_s + args.ttl_s)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.url:
        print(f"{args.url.rstrip('/')}{path}?token={quote(token, safe='')}", file=out)
    else:
        print(token, file=out)
    return 0


def run(args: argparse.Namespace, *, env: Mapping[str, str] | None = None,
        now_s: float | None = None, stdout: TextIO | None = None) -> int:
    """Run ``voicebot token ...``; ``env``, ``now_s`` (Unix time), ``stdout`` for tests."""
    out = stdout if stdout is not None else sys.stdout
    if args.token_command == "mint":
        return _mint(args, os.environ if env is None else env,
                     time.time() if now_s is None else now_s, out)
    if args.token_command == "new-secret":
        if not 16 <= args.bytes <= 1024:
            raise ConfigError("--bytes must be between 16 and 1024")
        print(secrets.token_urlsafe(args.bytes), file=out)
        return 0
    raise AssertionError(f"unknown token command {args.token_command!r}")

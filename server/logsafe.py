"""Log hygiene: caller-supplied text never forges a log line.

Call ids, Twilio ``callSid``s, transcripts and reasons come from the network.  A
``\\n`` in one would start a fake log line; an ESC would drive the operator's
terminal.  :class:`SafeFormatter` escapes every control character of the
*message* (``\\n``, ``\\x1b``, ``\\u2028``…); a traceback keeps its lines, each
indented, so no caller text can begin a line.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import TypeAlias

__all__ = ["LOG_FORMAT", "SafeFormatter", "configure_logging", "escape_controls"]

_ExcInfo: TypeAlias = (
    "tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]"
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character escaped (controls, format characters,
    line and paragraph separators, unassigned code points, surrogates); printable text,
    accents included, is kept."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


class SafeFormatter(logging.Formatter):
    """A formatter whose message part holds no control characters."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:
        """The traceback indented by two spaces, control characters escaped line by
        line: an exception message quoting caller text cannot start a line of its own."""
        text = super().formatException(ei)
        return "\n".join("  " + escape_controls(line) for line in text.splitlines())


def configure_logging(level: str, *, fmt: str = LOG_FORMAT) -> None:
    """voicebot's own loggers at ``level``, third-party libraries at WARNING, every
    line through :class:`SafeFormatter` on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # This package is `server` in a checkout, `voicebot_server` when installed.
    for name in ("voicebot", __name__.rpartition(".")[0]):
        logging.getLogger(name).setLevel(level.upper())

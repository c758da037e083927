"""Log hygiene: caller-supplied text never forges a log line.

Call ids, Twilio ``callSid``s, transcripts and reasons come from the network.  A
``\\n`` in one would start a fake log line; an ESC would drive the operator's
terminal.  :class:`SafeFormatter` escapes every control character of the
*message* (``\\n``, ``\\x1b``, ``\\u2028``…); a traceback keeps its lines, each
indented, so no caller text can begin a line.

``log_format: json`` writes one JSON object per line instead (:class:`JsonFormatter`:
time, level, logger, call id, message, traceback), for log shippers; JSON escapes
every control character itself.  The call id comes from :data:`call_id_var`, which
the server sets in each call's task (every task the call starts inherits it).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from types import TracebackType
from typing import TypeAlias

__all__ = ["LOG_FORMAT", "CallIdFilter", "JsonFormatter", "SafeFormatter", "call_id_var",
           "configure_logging", "escape_controls"]

_ExcInfo: TypeAlias = (
    "tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]"
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("voicebot_call_id",
                                                                  default="-")
"""The call the running task serves (``-`` outside calls)."""

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


class CallIdFilter(logging.Filter):
    """Gives every record ``call_id`` (:data:`call_id_var`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``call_id``, ``message`` and, with an exception, ``exception`` (the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str, *, fmt: str = LOG_FORMAT, json_lines: bool = False) -> None:
    """voicebot's own loggers at ``level``, third-party libraries at WARNING, every
    line through :class:`SafeFormatter` (or :class:`JsonFormatter`) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else SafeFormatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # This package is `server` in a checkout, `voicebot_server` when installed.
    for name in ("voicebot", __name__.rpartition(".")[0]):
        logging.getLogger(name).setLevel(level.upper())

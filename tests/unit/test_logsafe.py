"""Log hygiene: caller-supplied text cannot start a log line or drive a terminal."""

from __future__ import annotations

import io
import logging

from hypothesis import given
from hypothesis import strategies as st

from server.logsafe import SafeFormatter, escape_controls

__all__: list[str] = []


def _logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(f"test.logsafe.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_newlines_and_escapes_in_arguments_stay_on_one_line() -> None:
    logger, stream = _logger()
    logger.info("call %s ended", "CA1\nINFO server.app: admin login ok\x1b[2J\u2028x")
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "\x1b" not in out and "\u2028" not in out
    assert "CA1\\nINFO server.app: admin login ok\\x1b[2J\\u2028x" in out


def test_a_traceback_keeps_its_lines_but_none_starts_at_column_zero() -> None:
    logger, stream = _logger()
    try:
        raise ValueError("bad value\nINFO server.app: forged")
    except ValueError:
        logger.exception("call %s failed", "c1")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "ERROR test.logsafe." + lines[0].split("test.logsafe.", 1)[1]
    assert len(lines) > 3 and all(line.startswith("  ") for line in lines[1:])
    assert "  INFO server.app: forged" in lines


def test_printable_text_is_unchanged() -> None:
    assert escape_controls("Zoë's card, 4217 — ok") == "Zoë's card, 4217 — ok"


@given(st.text())
def test_escaped_text_has_no_line_breaks_or_controls(text: str) -> None:
    escaped = escape_controls(text)
    assert len(escaped.splitlines()) <= 1
    assert all(c.isprintable() or c == " " for c in escaped)

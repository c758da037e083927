"""Untrusted text from the wire: bounded JSON parsing and safe echoing.

Every websocket text frame voicebot parses — native control messages
(:mod:`voicebot.protocol`), provider messages (:mod:`voicebot.telephony`) and the
first message that :func:`voicebot.telephony.detect_provider` inspects — goes
through :func:`load_json`, which fails with one exception type, ``ValueError``,
for anything that is not plain, shallow JSON:

* invalid JSON or invalid UTF-8 (``bytes``);
* nesting deeper than :data:`MAX_JSON_DEPTH` (no ``RecursionError`` escapes:
  the C decoder's is caught, and shallower-than-the-stack nesting is measured
  without recursion);
* integer literals of more than Python's ``int`` digit limit (4,300 digits);
* the non-standard constants ``NaN``, ``Infinity`` and ``-Infinity``.

:func:`replace_unsafe_chars` neutralizes the characters that must not reach a
close reason (C0/C1 controls, line/paragraph separators, lone surrogates);
:func:`has_lone_surrogate` finds text that cannot be encoded as UTF-8 at all
(JSON's ``"\ud800"``); :func:`shown` quotes a caller's value in an error
message without echoing all of it.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "MAX_JSON_DEPTH",
    "has_lone_surrogate",
    "load_json",
    "replace_unsafe_chars",
    "shown",
]

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects accepted (provider messages nest 4 levels at most)."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(obj: Any, max_depth: int) -> bool:
    """Whether ``obj`` nests arrays/objects more than ``max_depth`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def load_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in ``text``; ``ValueError`` for invalid or too deeply nested JSON."""
    opening = (
        text.count(b"[") + text.count(b"{")
        if isinstance(text, bytes)
        else text.count("[") + text.count("{")
    )
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    # Fewer brackets than the bound (the common case) cannot nest deeper than it.
    if opening > max_depth and isinstance(obj, dict | list) and _depth_exceeds(obj, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return obj


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (it then has no UTF-8 encoding)."""
    return _SURROGATE.search(text) is not None


def replace_unsafe_chars(text: str) -> str:
    """``text`` with controls and line separators as spaces, lone surrogates as U+FFFD
    (so the result always encodes as UTF-8); as long as ``text``, character for character."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to about ``limit`` characters, for quoting in an error message."""
    text = repr(value[: limit + 1] if isinstance(value, str | bytes) else value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."

"""Shared pieces of the caller-input fuzz tests: settings, inputs and the frame mutator.

The hypothesis settings, the golden-trace calls (``tests/conformance``) as
inbound frames, deeply nested JSON, the native protocol's frames, the nasty
values and :func:`mutate`, which replaces one value of a frame with a nasty one
or removes it.  Used by test_codec_fuzz.py, test_protocol_fuzz.py and
tests/integration/test_server_fuzz.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.unit.test_telephony import TRACES, inbound_frame, load_trace
from voicebot import protocol as p
from voicebot.telephony.base import Frame

__all__ = [
    "DEEP",
    "DELETE",
    "FUZZ",
    "NASTY",
    "NASTY_TEXT",
    "NATIVE",
    "TRACE_FRAMES",
    "Raw",
    "dumps_raw",
    "mutate",
    "paths",
]

FUZZ = settings(deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRACE_FRAMES = {path: [inbound_frame(s) for s in load_trace(path) if s["step"] == "in"]
                for path in TRACES}
DEEP = ["[" * 5000, '{"a":' * 5000, '{"event":' * 5000, "[" * 100 + "]" * 100,
        '{"event":"start","x":' + "[" * 40 + "]" * 40 + "}"]


@dataclass(frozen=True)
class Raw:
    """A value spliced into the JSON text as is (deep nesting, 5000-digit literals)."""

    text: str


NASTY_TEXT = ["9" * 5000, "9" * 20, "100000000", "-1", "0", "²", "٣", "1e3", " 8000", "8000\n",
              "\x00", "\x1b[2J", "a\r\nb", "\ud800", "\u2028", "x" * 20_000, "", "vb-²-0",
              "vb-" + "9" * 5000 + "-0", "MEDIA_START"]
NASTY: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([*NASTY_TEXT, 10**30, -1, -(10**30), 2**63, 2**64, 0, 1.5, -0.0, 1e308,
                     None, True, False, [], {}, {"a": {"b": "c"}}, [1, "2", None],
                     Raw("9" * 5000), Raw("[" * 5000), Raw("[" * 40 + "]" * 40), Raw("NaN"),
                     Raw("1e999"), Raw('{"a":' * 100 + "1" + "}" * 100)]),
    st.integers(), st.floats(), st.text(max_size=30),
)
DELETE = object()


def dumps_raw(obj: Any) -> str:
    """``json.dumps`` with every :class:`Raw` value spliced in verbatim."""
    raws: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            raws.append(node.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    text = json.dumps(swap(obj))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into a JSON value (not the root)."""
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else [])
    out: list[tuple[Any, ...]] = []
    for key, child in items:
        out += [(*prefix, key), *paths(child, (*prefix, key))]
    return out


def mutate(frame: Frame, data: st.DataObject) -> Frame:
    """``frame`` with one value replaced by a nasty one, or removed."""
    if isinstance(frame, bytes):
        return data.draw(st.binary(max_size=200))
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):  # Asterisk's plain "EVENT key:value" text
        tokens = frame.split(" ")
        i = data.draw(st.integers(0, len(tokens) - 1))
        key, _, _ = tokens[i].partition(":")
        tokens[i] = f"{key}:{data.draw(st.sampled_from(NASTY_TEXT))}"
        return " ".join(tokens)
    options = paths(obj)
    if not options:
        return dumps_raw(data.draw(NASTY))
    *parents, last = data.draw(st.sampled_from(options))
    node = obj
    for key in parents:
        node = node[key]
    value = data.draw(NASTY | st.just(DELETE))
    if value is DELETE and isinstance(node, dict):
        del node[last]
    else:
        node[last] = None if value is DELETE else value
    return dumps_raw(obj)


# A native call's start, keys and stop, as a client sends them.
NATIVE = [p.encode_client_message(m) for m in (
    p.Start(call_id="c1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card",
            metadata={"a": "b"}),
    p.Dtmf("12#"), p.Stop("caller_hangup"))]

"""Opt-in server events of the native protocol (version 1, revision 1.1): a pure codec part.

A client names the extra events it wants in ``start``'s ``events`` list; the server
sends only those, so a client that does not ask (every client written before them,
whose decoders refuse unknown event types) never sees one.  Names the server does not
know are accepted and ignored (a newer client may talk to an older server).

* ``turn`` (:class:`TurnEvent`): one per bot reply, as its first audio frame is sent:
  what the caller said (masked), what was understood, the slots (sensitive ones
  masked), the reply's text, the rule that ended the turn and where the turn's latency
  went.  The browser softphone (``/demo``) draws its call panel from these.

:mod:`voicebot.protocol` carries these in ``Start.events`` and its event union;
``docs/protocol.md`` documents them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voicebot.errors import ProtocolError

__all__ = [
    "MAX_EVENT_NAMES",
    "MAX_EVENT_NAME_CHARS",
    "OPTIONAL_EVENTS",
    "TurnEvent",
    "parse_event_names",
]

OPTIONAL_EVENTS = ("turn",)
"""The opt-in events this server knows."""
MAX_EVENT_NAMES = 16
MAX_EVENT_NAME_CHARS = 32
_NAME = re.compile(f"[A-Za-z0-9_-]{{1,{MAX_EVENT_NAME_CHARS}}}")


def parse_event_names(value: Any) -> tuple[str, ...]:
    """``start``'s ``events``: a list of at most 16 names of 1-32 ASCII letters, digits,
    ``_`` or ``-`` (duplicates dropped, order kept); :class:`ProtocolError` otherwise."""
    if not isinstance(value, list) or len(value) > MAX_EVENT_NAMES:
        raise ProtocolError(f"'events' must be a list of at most {MAX_EVENT_NAMES} names")
    names: list[str] = []
    for name in value:
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise ProtocolError(f"'events' names are 1..{MAX_EVENT_NAME_CHARS} of "
                                "A-Z a-z 0-9 _ -")
        if name not in names:
            names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnEvent:
    """A turn explained, sent as its reply's first audio frame is (opt-in: ``turn``).

    ``turn`` is the caller turn answered (0: the greeting), ``reply`` the reply.
    ``heard`` is the transcript, or the keys pressed, masked whole when the turn gave a
    sensitive slot; ``slots`` are the dialog's slots, sensitive ones masked; ``text`` is
    the reply, any sensitive value in it masked.  ``source``: ``greeting``, ``speech``,
    ``dtmf``, ``no_input`` or ``webhook``; ``kind``: ``answer``, ``reprompt`` or
    ``fallback``.  ``end_rule`` and ``turn_score`` (spoken turns): what ended the turn
    (``silence``, ``model``, ...) and the end-of-turn model's score.  ``latency_ms``:
    from the end of the caller's input to the reply's first audio; ``parts_ms``: the
    parts measured (``endpoint_wait``, ``asr``, ``nlu``, ``tts_first_audio``,
    ``queue_wait``, ``turn_model``), whole milliseconds.
    """

    type: ClassVar[str] = "turn"
    turn: int
    reply: int
    source: str
    heard: str
    intent: str | None
    confidence: float
    state: str
    text: str
    kind: str = "answer"
    slots: Mapping[str, str] = field(default_factory=dict)
    sensitive: bool = False
    end_rule: str | None = None
    turn_score: float | None = None
    latency_ms: int = 0
    parts_ms: Mapping[str, int] = field(default_factory=dict)

"""What the caller heard of a bot reply: pure bookkeeping for :class:`voicebot.session.Session`.

A reply is sent sentence by sentence; after each sentence the session asks the
transport for a *mark* (``Mark`` command).  Providers with marks report when a
mark was played (``Session.mark_played``); for the others, and for the part of
a sentence still playing, the session's audio clock (caller audio received)
estimates how far playback got.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_MARK_DIGITS", "Heard", "Playback", "mark_name", "parse_mark"]

_PREFIX = "vb"
MAX_MARK_DIGITS = 18
"""Longest reply / sentence number in a mark name :func:`parse_mark` accepts."""


def _number(text: str) -> int | None:
    """``text`` as a number if it is 1..18 ASCII digits (``"²"`` and ``"٣"`` are not)."""
    if 0 < len(text) <= MAX_MARK_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


def mark_name(reply: int, index: int) -> str:
    """The mark sent after sentence ``index`` of ``reply``."""
    return f"{_PREFIX}-{reply}-{index}"


def parse_mark(name: str) -> tuple[int, int] | None:
    """``(reply, index)`` of a mark this module named, else None (not ours, or garbage:
    numbers of other than 1..:data:`MAX_MARK_DIGITS` ASCII digits); never raises."""
    prefix, _, rest = name.partition("-")
    reply, _, index = rest.partition("-")
    if prefix != _PREFIX:
        return None
    reply_number, index_number = _number(reply), _number(index)
    if reply_number is None or index_number is None:
        return None
    return reply_number, index_number


@dataclass(frozen=True, slots=True)
class Heard:
    """How much of a reply the caller heard when it was interrupted."""

    sentences: int
    ms: int
    text: str
    heard: str
    unheard: str

    def as_values(self) -> dict[str, str | int]:
        """What a scenario template sees as ``{interrupted.…}``."""
        return {"text": self.text, "heard": self.heard, "unheard": self.unheard,
                "sentences": self.sentences, "ms": self.ms}


@dataclass(slots=True)
class Playback:
    """One reply's sentences, their audio end times and the marks played back."""

    sentences: list[str]
    use_marks: bool
    start_ms: float | None = None  # audio clock when the first audio went out
    ends_ms: list[float] = field(default_factory=list)  # cumulative ms after each sentence
    marked: int = 0  # sentences confirmed played by marks (a prefix)

    def sent(self, duration_ms: float, start_ms: float) -> None:
        """One more sentence went out; the first one starts playing at ``start_ms``."""
        if self.start_ms is None:
            self.start_ms = start_ms
        previous = self.ends_ms[-1] if self.ends_ms else 0.0
        self.ends_ms.append(previous + duration_ms)

    def mark_played(self, index: int) -> None:
        self.marked = max(self.marked, min(index + 1, len(self.ends_ms)))

    def heard(self, now_ms: float, text: str) -> Heard:
        """How much was heard at ``now_ms`` (audio clock)."""
        sent_ms = self.ends_ms[-1] if self.ends_ms else 0.0
        clock_ms = 0.0 if self.start_ms is None else min(max(now_ms - self.start_ms, 0.0), sent_ms)
        if self.use_marks:
            floor = self.ends_ms[self.marked - 1] if self.marked else 0.0
            ceiling = self.ends_ms[self.marked] if self.marked < len(self.ends_ms) else sent_ms
            ms = min(max(clock_ms, floor), ceiling)
            count = self.marked
        else:
            ms = clock_ms
            count = sum(1 for end in self.ends_ms if end <= ms)
        return Heard(
            sentences=count, ms=int(ms), text=text,
            heard=" ".join(self.sentences[:count]), unheard=" ".join(self.sentences[count:]),
        )

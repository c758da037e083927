"""Key entry (DTMF) of one call: the keys pressed so far and when an entry is complete.

A pure state machine, part of :class:`voicebot.session.Session`.  An entry is
complete at ``#``, at the expected slot's length, or at :data:`MAX_KEYS` keys.
"1234#" keyed one key per message while a four-digit slot is asked for is
complete at the 4; the ``#`` that follows only confirms it and is ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from voicebot.nlu.entities import digits_from_dtmf
from voicebot.types import EntityValue

__all__ = ["MAX_KEYS", "KeyEntry", "KeyPress", "KeyPressKind"]

MAX_KEYS = 64
"""A key entry ends at '#', at the expected slot's length, or at this many keys."""


class KeyPressKind(enum.Enum):
    """What one DTMF message did to the entry."""

    CONFIRMATION = enum.auto()  # a '#' after an entry complete by its length: ignored
    PENDING = enum.auto()  # keys taken, the entry goes on
    COMPLETE = enum.auto()  # the entry is complete: ``digits`` is the caller's input


@dataclass(frozen=True, slots=True)
class KeyPress:
    kind: KeyPressKind
    digits: str = ""  # for COMPLETE: the digits entered ('#' and '*' left out)

    def entities(self) -> dict[str, EntityValue]:
        """What the entry fills: ``digits`` and ``number`` (none for an empty entry)."""
        return {"digits": self.digits, "number": int(self.digits)} if self.digits else {}


class KeyEntry:
    """The keys of the entry in progress."""

    __slots__ = ("_full", "_keys")

    def __init__(self) -> None:
        self._keys = ""
        self._full = False  # the last entry ended by its length (a '#' may follow)

    @property
    def keys(self) -> str:
        """The keys of the entry in progress."""
        return self._keys

    def press(self, keys: str, *, expected_length: int | None) -> KeyPress:
        """``keys`` arrived; ``expected_length``: the digits the slot asked for wants."""
        if keys == "#" and not self._keys and self._full:
            self._full = False
            return KeyPress(KeyPressKind.CONFIRMATION)
        self._full = False
        self._keys += keys
        digits = digits_from_dtmf(self._keys)
        done = "#" in self._keys or len(self._keys) >= MAX_KEYS or (
            expected_length is not None and len(digits) >= expected_length
        )
        if not done:
            return KeyPress(KeyPressKind.PENDING)
        self._full = "#" not in self._keys
        self._keys = ""
        return KeyPress(KeyPressKind.COMPLETE, digits)

    def spoken_turn(self) -> None:
        """The caller spoke a turn: a later '#' is a new entry, not a confirmation."""
        self._full = False

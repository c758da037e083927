"""What of a call may leave the dialog: masked texts and recording pauses (pure).

Part of :class:`voicebot.session.Session`.  The scenario's ``sensitive: true`` slots
decide:

* a caller turn given while a sensitive slot is asked for is *sensitive*: what was
  heard (or keyed) is masked whole (:func:`voicebot.redact.mask_numbers`), and the
  digits in it are remembered as sensitive values of the call;
* every text the session hands out for logs and records (transcripts, replies,
  slots, the unheard part of an interrupted reply) has the call's sensitive values
  masked (:class:`voicebot.redact.Redactor`);
* the recording pauses (:class:`RecordingPause`) while a sensitive slot is asked for
  and while a reply that says a sensitive value plays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voicebot.commands import BargedIn, Command, RecordingPause, ReplyKind, ReplyStarted
from voicebot.dialog.engine import Retried
from voicebot.dialog.scenario import Scenario, SlotSpec
from voicebot.redact import Redactor, mask_numbers
from voicebot.session_turns import UtteranceEnd
from voicebot.types import EntityValue

__all__ = ["CallPrivacy", "TurnNote"]


@dataclass(slots=True)
class TurnNote:
    """What a caller turn was, for the log record of the reply that answers it."""

    transcript: str = ""
    intent: str | None = None
    confidence: float = 0.0
    source: str = "greeting"
    sensitive: bool = False  # given while a sensitive slot was asked for
    end: UtteranceEnd | None = None  # a spoken turn: which rule ended it


class CallPrivacy:
    """The masks and the recording pause of one call."""

    __slots__ = ("_paused", "_sensitive", "_sensitive_replies", "redactor")

    def __init__(self, scenario: Scenario) -> None:
        self._sensitive = frozenset(n for n, spec in scenario.slots.items() if spec.sensitive)
        self.redactor = Redactor()
        self._paused = False
        self._sensitive_replies: set[int] = set()

    @staticmethod
    def sensitive_slot(spec: SlotSpec | None) -> bool:
        return spec is not None and spec.sensitive

    def heard(self, text: str, *, sensitive: bool) -> str:
        """A caller turn's transcript (or keys) as logs and records may show it."""
        return self.redactor.text(mask_numbers(text) if sensitive else text)

    def given(self, text: str, entities: Mapping[str, EntityValue]) -> None:
        """A sensitive turn's input: its digits and numbers are sensitive values."""
        for name in ("digits", "number"):
            value = entities.get(name)
            if value is not None:
                self.redactor.add(value)
        digits = "".join(c for c in text if c.isdigit())
        if digits:
            self.redactor.add(digits)

    def learn(self, slots: Mapping[str, object]) -> None:
        """The dialog's slots after a step: remember the sensitive ones' values."""
        self.redactor.add_slots(slots, self._sensitive)

    def reply_started(self, reply_id: int, turn: int, note: TurnNote, *, text: str,
                      state: str, slots: Mapping[str, object],
                      retried: Retried | None = None) -> ReplyStarted:
        """The log record of reply ``reply_id`` (answering ``turn``; ``retried``: the
        dialog asked again), every text masked; a reply that says a sensitive value is
        remembered (the recording stays paused while it plays)."""
        masked = self.redactor.text(text)
        if masked != text:
            self._sensitive_replies.add(reply_id)
        kind = ReplyKind.ANSWER
        if retried is not None:
            kind = ReplyKind.FALLBACK if retried.fallback else ReplyKind.REPROMPT
        return ReplyStarted(
            reply_id, turn, self.heard(note.transcript, sensitive=note.sensitive),
            note.intent, note.confidence, state, masked, source=note.source,
            slots=self.slots(slots), sensitive=note.sensitive or masked != text, kind=kind,
            retry_state=retried.state if retried is not None else "",
            end_rule=note.end.rule if note.end is not None else None,
            turn_score=note.end.score if note.end is not None else None)

    def slots(self, slots: Mapping[str, object]) -> dict[str, str]:
        return self.redactor.slots(slots, self._sensitive)

    def _masked(self, command: Command) -> Command:
        """A :class:`BargedIn` with its unheard text masked; anything else unchanged."""
        if isinstance(command, BargedIn) and self.redactor.active:
            return BargedIn(command.reply, command.heard_sentences, command.heard_ms,
                            self.redactor.text(command.unheard))
        return command

    def update(self, out: list[Command], *, expecting: SlotSpec | None,
               playing: int | None) -> list[Command]:
        """``out`` (an interrupted reply's unheard text masked), then a pause or resume
        of the recording if due: paused while the sensitive slot ``expecting`` is asked
        for, or while the sensitive reply ``playing`` plays."""
        out = [self._masked(command) for command in out]
        if self.sensitive_slot(expecting):
            assert expecting is not None
            reason = f"sensitive slot {expecting.name}"
        elif playing is not None and playing in self._sensitive_replies:
            reason = "a reply saying a sensitive value"
        else:
            reason = ""
        paused = bool(reason)
        if paused == self._paused:
            return out
        self._paused = paused
        return [*out, RecordingPause(paused=paused, reason=reason)]

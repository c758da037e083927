"""Speculative replies, as a part of the Session: :class:`RepliesAhead`.

When the caller pauses, the speculative ASR transcribes the turn so far
(:class:`~voicebot.commands.SpeculateTranscription`).  With speculative replies on,
that transcript goes on at once through the rest of the turn's work, ahead of the
end of the turn:

1. its NLU (:class:`~voicebot.commands.UnderstandAhead`);
2. the dialog's step on a *fork* of the dialog (:meth:`DialogEngine.fork`): what the
   bot would answer -- the real dialog does not move;
3. the synthesis of that answer's first sentence (:class:`SynthesizeAhead`), held.

Nothing is sent.  If the turn then ends on exactly that transcript (the caller stayed
silent: the final ASR *is* the speculative one), the speculation is *used*: the turn
goes the ordinary way (transcript event, intent event, the real dialog's step) with
the NLU result already in hand, and the reply's first sentence, when it is the held
one, is sent from the held audio (or awaited, when its synthesis is still running)
instead of being synthesized again.  If the caller goes on, or the turn ends on
another transcript, it is *discarded*: it cost CPU only.  So no reply is ever sent
that the caller did not finish asking for, and a used speculation sends exactly what
the ordinary path would have sent.

Not speculated: a step that calls a webhook (a side effect) or says nothing; the
turn then takes the ordinary path from its NLU result.  Pure, like the other parts:
no clock, no model, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voicebot.commands import Command, ReplyAhead, Synthesize, SynthesizeAhead, UnderstandAhead
from voicebot.dialog.engine import DialogEngine, UserInput, sort_outputs
from voicebot.session_replies import Replies
from voicebot.text import split_sentences
from voicebot.types import EntityValue, IntentResult, Pcm, Understanding

__all__ = ["Ahead", "RepliesAhead", "spoken_input"]


def spoken_input(text: str, result: IntentResult | None,
                 entities: Mapping[str, EntityValue]) -> UserInput:
    """The dialog's input for a spoken turn (the real turn's and a speculation's alike):
    the best intent, and the runners-up for the clarifying question."""
    if result is None:
        return UserInput(text, None, 0.0, dict(entities), "speech")
    return UserInput(text, result.intent, result.confidence, dict(entities), "speech",
                     alternatives=result.scores[1:3])


@dataclass(slots=True)
class Ahead:
    """One speculative reply: the transcript it was made from and what is ready."""

    id: int
    utterance: int
    text: str
    understood: bool = False  # the NLU answered
    understanding: Understanding | None = None  # ... None: it failed
    sentence: str | None = None  # the first sentence whose synthesis was asked for
    pcm: Pcm | None = None  # ... its audio, once synthesized
    turn: int | None = None  # used: the turn it answers
    awaiting: int | None = None  # used: the reply whose first sentence waits on ``pcm``


class RepliesAhead:
    """The call's speculative reply (at most one at a time)."""

    def __init__(self, replies: Replies, *, rate_hz: int) -> None:
        self._replies = replies
        self._rate_hz = rate_hz
        self._seq = 0
        self.current: Ahead | None = None

    def start(self, utterance: int, text: str, domain: str) -> list[Command]:
        """The transcript ``text`` of the paused utterance came back: speculate on it."""
        out = self.void()
        self._seq += 1
        self.current = Ahead(self._seq, utterance, text)
        return [*out, UnderstandAhead(self._seq, text, domain)]

    def discard(self, utterance: int) -> list[Command]:
        """The caller went on speaking in ``utterance``: its speculation is stale."""
        ahead = self.current
        return self.void() if ahead is not None and ahead.utterance == utterance else []

    def void(self) -> list[Command]:
        """Drop the speculation in progress; counted discarded unless it was used."""
        ahead, self.current = self.current, None
        if ahead is None or ahead.turn is not None:
            return []
        return [ReplyAhead(ahead.id, used=False)]

    def get(self, speculation: int) -> Ahead | None:
        """The speculation ``speculation`` if it is still the current one."""
        ahead = self.current
        return ahead if ahead is not None and ahead.id == speculation else None

    def use(self, utterance: int, text: str, turn: int) -> tuple[Ahead | None, list[Command]]:
        """Utterance ``utterance`` ended as turn ``turn`` with transcript ``text``: the
        speculation, if it was made from exactly that, and its ``used`` record."""
        ahead = self.current
        if ahead is None or ahead.turn is not None:
            return None, []
        if ahead.utterance != utterance or ahead.text != text:
            return None, self.void()
        ahead.turn = turn
        return ahead, [ReplyAhead(ahead.id, used=True)]

    def understood(self, ahead: Ahead, understanding: Understanding | None,
                   dialog: DialogEngine) -> list[Command]:
        """The NLU of a speculation not yet used answered: what would the dialog say?
        The first sentence of that is synthesized ahead."""
        ahead.understood, ahead.understanding = True, understanding
        if understanding is None:
            return []
        user = spoken_input(ahead.text, understanding.intent, understanding.entities)
        step = sort_outputs(dialog.fork().handle(user))
        sentences = split_sentences(" ".join(step.texts))
        if step.webhooks or not sentences:
            return []
        ahead.sentence = sentences[0]
        return [SynthesizeAhead(ahead.id, ahead.sentence, self._rate_hz)]

    def synthesized(self, ahead: Ahead, pcm: Pcm | None, now_ms: float) -> list[Command]:
        """The held sentence's audio (None: its synthesis failed)."""
        reply = ahead.awaiting
        if reply is None:  # not asked for yet: hold it
            ahead.pcm = pcm
            if pcm is None:
                ahead.sentence = None  # nothing to offer: the ordinary synthesis runs
            return []
        self.current = None
        if pcm is None:  # the reply waits on it: synthesize it the ordinary way
            assert ahead.sentence is not None
            return [Synthesize(reply, 0, ahead.sentence, self._rate_hz)]
        return self._replies.synthesized(reply, 0, pcm, now_ms)

    def claim_first_sentence(self, turn: int, out: list[Command],
                             now_ms: float) -> list[Command]:
        """The reply of turn ``turn`` started with ``out``: if the turn used a
        speculation whose held sentence is the reply's first, that sentence is sent
        from the held audio (or awaited) instead of being synthesized again."""
        ahead = self.current
        if ahead is None or ahead.turn != turn:
            return out
        first = next((i for i, c in enumerate(out)
                      if isinstance(c, Synthesize) and c.index == 0), None)
        if first is None or ahead.sentence is None:
            self.current = None
            return out
        job = out[first]
        assert isinstance(job, Synthesize)
        if job.text != ahead.sentence or job.sample_rate_hz != self._rate_hz:
            self.current = None
            return out
        rest = out[:first] + out[first + 1:]
        if ahead.pcm is None:  # still synthesizing: its result completes the reply
            ahead.awaiting = job.reply
            return rest
        self.current = None
        return rest + self._replies.synthesized(job.reply, 0, ahead.pcm, now_ms)

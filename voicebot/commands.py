"""Commands a :class:`voicebot.session.Session` returns for its runtime to carry out.

The session never does I/O or runs a model: it returns these frozen records.
The runtime sends the messages and runs each engine job; the job table
(:mod:`voicebot.jobkinds`: one row per job record) says where a job runs and
which session input, also named in the record's docstring, takes its result.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from voicebot.protocol import ServerEvent
from voicebot.types import Pcm

__all__ = [
    "BargedIn",
    "CallEnded",
    "CallOutcome",
    "CallWebhook",
    "CancelReply",
    "CancelTranscription",
    "CloseConnection",
    "Command",
    "DetectSpeech",
    "DetectTurnEnd",
    "DiscardSpeculation",
    "FeedTranscription",
    "FinishTranscription",
    "Mark",
    "RecordingPause",
    "ReplyAhead",
    "ReplyKind",
    "ReplyStarted",
    "SendAudio",
    "SendEvent",
    "SpeculateTranscription",
    "StartTranscription",
    "Synthesize",
    "SynthesizeAhead",
    "Understand",
    "UnderstandAhead",
]


@dataclass(frozen=True, slots=True)
class SendEvent:
    """Send a server event; the call's transport encodes it (native JSON, or the
    provider's message, or nothing where the provider has no such message)."""

    event: ServerEvent


@dataclass(frozen=True, slots=True)
class Mark:
    """Sentence ``index`` of ``reply`` was sent: ask to be told when it has played.

    Transports whose provider has marks send one named ``name``; the provider's
    echo comes back through ``Session.mark_played``.  Native sends nothing.
    """

    reply: int
    index: int
    name: str


@dataclass(frozen=True, slots=True)
class SendAudio:
    """Send a binary audio frame of ``reply`` (already in the call's encoding).

    A runtime drops frames of a reply it was told to cancel.
    """

    reply: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseConnection:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class DetectSpeech:
    """Run the VAD on whole windows; answer with ``Session.speech_probabilities``.

    Must be answered in order, before the next audio frame is given to the session.
    """

    pcm: Pcm


@dataclass(frozen=True, slots=True)
class StartTranscription:
    utterance: int
    domain: str
    pcm: Pcm


@dataclass(frozen=True, slots=True)
class FeedTranscription:
    utterance: int
    pcm: Pcm


@dataclass(frozen=True, slots=True)
class FinishTranscription:
    """End of the utterance: answer with ``Session.transcribed``.

    ``endpoint_delay_ms`` is how long ago (in audio time) the caller stopped
    speaking: the runtime subtracts it to time the turn from the end of speech.
    """

    utterance: int
    endpoint_delay_ms: int


@dataclass(frozen=True, slots=True)
class CancelTranscription:
    utterance: int


@dataclass(frozen=True, slots=True)
class SpeculateTranscription:
    """The caller fell silent: transcribe the utterance so far, ahead of the endpoint.

    The result is kept for ``FinishTranscription`` unless ``DiscardSpeculation`` comes first.
    """

    utterance: int


@dataclass(frozen=True, slots=True)
class DiscardSpeculation:
    """Speech resumed after a speculation: the speculative result is stale."""

    utterance: int


@dataclass(frozen=True, slots=True)
class DetectTurnEnd:
    """Ask the end-of-turn model whether the caller has finished utterance ``utterance``;
    answer with ``Session.turn_verdict(request_id, complete_prob)``.

    ``pcm``: the last (at most 8 s) of the utterance's audio up to the pause, 16 kHz
    (the VAD's rate).  A verdict that comes back after the caller went on is ignored.
    """

    utterance: int
    request_id: int
    pcm: Pcm


@dataclass(frozen=True, slots=True)
class Understand:
    """Classify intent and extract entities; answer with ``Session.understood``."""

    turn: int
    text: str
    domain: str


@dataclass(frozen=True, slots=True)
class UnderstandAhead:
    """Classify the transcript of a caller who has paused but not yet finished (a
    speculative reply, :mod:`voicebot.session_ahead`); answer with
    ``Session.understood_ahead``.  Nothing reaches the caller from it unless the turn
    ends on exactly this transcript."""

    speculation: int
    text: str
    domain: str


@dataclass(frozen=True, slots=True)
class SynthesizeAhead:
    """Synthesize the first sentence of a speculative reply and hold it; answer with
    ``Session.synthesized_ahead``."""

    speculation: int
    text: str
    sample_rate_hz: int


@dataclass(frozen=True, slots=True)
class ReplyAhead:
    """A speculative reply was ``used`` (its turn ended on its transcript) or
    ``discarded`` (the caller went on, or the turn ended otherwise): for the metrics."""

    speculation: int
    used: bool


@dataclass(frozen=True, slots=True)
class Synthesize:
    """Synthesize one sentence at ``sample_rate_hz``; answer with ``Session.synthesized``.

    Jobs of one reply must run in ``index`` order.
    """

    reply: int
    index: int
    text: str
    sample_rate_hz: int


@dataclass(frozen=True, slots=True)
class CancelReply:
    """Drop the queued synthesis jobs of ``reply`` (barge-in, hang-up)."""

    reply: int


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """POST ``payload`` as JSON; answer with ``Session.webhook_result``."""

    request_id: int
    url: str
    payload: Mapping[str, Any]
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class BargedIn:
    """The caller interrupted ``reply`` (for metrics and the turn log; ``clear`` is
    already among the sends): ``heard_sentences`` of it, ``heard_ms`` of audio, were heard."""

    reply: int
    heard_sentences: int = 0
    heard_ms: int = 0
    unheard: str = ""


class ReplyKind(enum.Enum):
    """What a reply does with the turn it answers (contact-center metrics)."""

    ANSWER = "answer"  # the dialog went on (or the greeting, a webhook's result)
    REPROMPT = "reprompt"  # the turn (or silence) did not answer: asked again
    FALLBACK = "fallback"  # ... and the retries are spent: the state's fallback


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """The first audio frame of ``reply`` is about to be sent (for turn logs, call
    records and metrics).

    ``turn`` is the caller turn it answers (0 for the greeting).  Every text here is
    already masked (:mod:`voicebot.redact`): ``transcript`` (what was heard, or the keys
    pressed), ``text`` (the reply) and ``slots`` never hold a sensitive value.
    ``source``: ``greeting``, ``speech``, ``dtmf``, ``no_input`` or ``webhook``.
    ``state`` is the dialog's state as the reply starts; ``kind`` says whether the
    reply asks again, and ``retry_state`` (reprompt, fallback) which state's question
    went unanswered (after a fallback ``state`` is already the fallback's).
    """

    reply: int
    turn: int
    transcript: str
    intent: str | None
    confidence: float
    state: str
    text: str
    source: str = "speech"
    slots: Mapping[str, str] = field(default_factory=dict)
    sensitive: bool = False  # the turn or the reply held a masked value
    kind: ReplyKind = ReplyKind.ANSWER
    retry_state: str = ""
    end_rule: str | None = None
    """What ended the spoken turn it answers (``model``, ``expectation``, ``max_silence``,
    ``silence``, ``max_length``); None for the greeting, keys, no-input and webhooks."""
    turn_score: float | None = None
    """The end-of-turn model's last verdict in the pause that ended it (None: none came)."""


@dataclass(frozen=True, slots=True)
class RecordingPause:
    """Sensitive input starts (``paused``) or is over: a recording holds silence from
    here until the next ``RecordingPause(paused=False)``."""

    paused: bool
    reason: str = ""


class CallOutcome(enum.Enum):
    """How a call ended, for its record."""

    COMPLETED = "completed"  # the dialog hung up at its end
    TRANSFERRED = "transferred"
    CALLER_HUNG_UP = "caller_hung_up"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over (sent once, before the connection closes): its outcome."""

    outcome: CallOutcome
    reason: str


Command: TypeAlias = (
    SendEvent
    | SendAudio
    | Mark
    | CloseConnection
    | DetectSpeech
    | DetectTurnEnd
    | StartTranscription
    | FeedTranscription
    | FinishTranscription
    | CancelTranscription
    | SpeculateTranscription
    | DiscardSpeculation
    | Understand
    | UnderstandAhead
    | Synthesize
    | SynthesizeAhead
    | ReplyAhead
    | CancelReply
    | CallWebhook
    | ReplyStarted
    | BargedIn
    | RecordingPause
    | CallEnded
)

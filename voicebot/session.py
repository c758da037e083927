"""The per-call state machine: sans-I/O, like python-websockets' protocol objects.

A :class:`Session` takes client inputs (``receive_message`` / ``receive_audio``,
``mark_played``, ``protocol_error``; ``receive_text`` / ``receive_bytes`` decode
native frames first) and engine results (``speech_probabilities``, ``transcribed``, ``understood``,
``synthesized``, ``webhook_result``) and returns :mod:`voicebot.commands` for
its runtime to carry out.  It never awaits, sleeps, reads the clock or runs a
model: time is counted in audio samples received from the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, decode, encode, frame_bytes
from voicebot.audio.framer import Framer, split_frames
from voicebot.audio.resample import StreamResampler
from voicebot.commands import (
    BargedIn,
    CallWebhook,
    CancelReply,
    CancelTranscription,
    CloseConnection,
    Command,
    DetectSpeech,
    DiscardSpeculation,
    FeedTranscription,
    FinishTranscription,
    Mark,
    ReplyStarted,
    SendAudio,
    SendEvent,
    SpeculateTranscription,
    StartTranscription,
    Synthesize,
    Understand,
)
from voicebot.dialog.engine import DialogEngine, EndCall, Prompt, UserInput, WebhookRequest
from voicebot.dialog.scenario import Scenario
from voicebot.errors import ProtocolError
from voicebot.nlu.entities import digits_from_dtmf, extract_entities
from voicebot.playback import Playback, mark_name, parse_mark
from voicebot.text import split_sentences
from voicebot.types import EntityValue, IntentResult, Pcm, Transcript
from voicebot.vad.endpointer import (
    EndpointConfig,
    Endpointer,
    SilenceStarted,
    SpeechAudio,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
)

__all__ = ["Session", "SessionConfig"]

log = logging.getLogger(__name__)

_MAX_DTMF_KEYS = 64
"""A key entry ends at '#', at the expected slot's length, or at this many keys."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Defaults for every call; a scenario's ``settings`` override per call."""

    default_scenario: str = "bank_card"
    asr_rate_hz: int = 16_000
    vad_window_samples: int = 512
    frame_ms: int = 20
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    speculative_asr_ms: int = 0
    """Start the final ASR after this much silence, before the endpoint (0: off)."""


@dataclass(slots=True)
class _Reply:
    id: int
    turn: int
    text: str
    sentences: list[str]
    final: EndCall | None
    log: ReplyStarted
    playback: Playback
    sent: int = 0  # sentences whose audio went out
    started: bool = False
    pending: dict[int, Pcm] = field(default_factory=dict)


@dataclass(slots=True)
class _Turn:
    transcript: str = ""
    intent: str | None = None
    confidence: float = 0.0


class Session:
    """One call, from the ``start`` message to the close."""

    def __init__(
        self, *, scenarios: Mapping[str, Scenario], config: SessionConfig, marks: bool = False
    ) -> None:
        """``marks``: the transport reports played marks (``mark_played``), so what the
        caller heard comes from them rather than from the audio clock alone."""
        self._scenarios = scenarios
        self._marks = marks
        self._config = config
        self.call_id: str | None = None
        self.closed = False
        self._scenario: Scenario | None = None
        self._dialog: DialogEngine | None = None
        self._encoding = AudioEncoding.PCM16
        self._rate_hz = 0
        self._frame_bytes = 0
        self._resampler: StreamResampler | None = None
        self._framer = Framer(config.vad_window_samples)
        self._endpointer: Endpointer | None = None
        self._barge_in_samples = 0
        self._input_samples = 0  # caller audio received, at the call's rate: the clock
        self._utterance = 0
        self._utterance_open = False
        self._utterance_barged = False
        self._pausing = False
        self._silence_start = 0
        self._speculated = False
        self._speculations_out = 0  # speculations asked for whose result has not come back
        self._speculate_samples = config.speculative_asr_ms * config.asr_rate_hz // 1000
        self._turn = 0
        self._turns: dict[int, _Turn] = {0: _Turn()}
        self._reply_seq = 0
        self._reply: _Reply | None = None
        self._playout_end_ms = 0.0
        self._listen_since_ms: float | None = None
        self._dtmf = ""
        self._dtmf_full = False  # the last key entry ended by its length (a '#' may follow)
        self._pending_end: EndCall | None = None
        self._text_handlers: dict[str, Callable[[Any], list[Command]]] = {
            "start": self._on_start,
            "dtmf": self._on_dtmf,
            "stop": self._on_stop,
        }

    # ------------------------------------------------------------------ client frames

    @property
    def now_ms(self) -> float:
        return self._input_samples * 1000.0 / self._rate_hz if self._rate_hz else 0.0

    @property
    def scenario(self) -> Scenario | None:
        return self._scenario

    def receive_text(self, text: str) -> list[Command]:
        """A native JSON control frame."""
        if self.closed:
            return []
        try:
            message = p.decode_client_message(text)
        except ProtocolError as exc:
            return self._fail(exc)
        return self.receive_message(message)

    def receive_message(self, message: p.ClientMessage) -> list[Command]:
        """A decoded control message (native, or translated from a provider's)."""
        if self.closed:
            return []
        try:
            if self._dialog is None and not isinstance(message, p.Start):
                raise ProtocolError(
                    f"'{message.type}' before 'start'", close_code=p.CloseCode.OUT_OF_ORDER
                )
            return self._text_handlers[message.type](message)
        except ProtocolError as exc:
            return self._fail(exc)

    def protocol_error(self, exc: ProtocolError) -> list[Command]:
        """The transport could not decode a message: report it and close the call."""
        return [] if self.closed else self._fail(exc)

    def mark_played(self, name: str) -> list[Command]:
        """The provider played (or cleared) everything up to mark ``name``."""
        parsed = parse_mark(name)
        reply = self._reply
        if self.closed or parsed is None or reply is None or parsed[0] != reply.id:
            return []
        reply.playback.mark_played(parsed[1])
        return []

    def receive_bytes(self, data: bytes) -> list[Command]:
        """A native binary audio frame."""
        return self.receive_audio(data)

    def receive_audio(self, data: bytes) -> list[Command]:
        """Caller audio in the call's encoding."""
        if self.closed:
            return []
        if self._dialog is None or self._resampler is None:
            return self._fail(
                ProtocolError("audio before 'start'", close_code=p.CloseCode.OUT_OF_ORDER)
            )
        try:
            pcm = decode(data, self._encoding)
        except ProtocolError as exc:
            # One bad frame: report it, keep the call (nothing else is lost).
            return [SendEvent(p.ErrorEvent(exc.close_code, str(exc), False))]
        self._input_samples += len(pcm)
        out = self._tick()
        windows = self._framer.push(self._resampler.process(pcm))
        if len(windows):
            out.append(DetectSpeech(windows))
        return out

    def connection_lost(self) -> list[Command]:
        """The socket went away: release what the call holds."""
        out = self._release()
        self.closed = True
        return out

    # ------------------------------------------------------------------ engine results

    def speech_probabilities(self, pcm: Pcm, probabilities: Any) -> list[Command]:
        if self.closed or self._endpointer is None:
            return []
        out: list[Command] = []
        for event in self._endpointer.process(pcm, list(probabilities)):
            if isinstance(event, SpeechStarted):
                out += self._on_speech_started(event)
            elif isinstance(event, SpeechAudio):
                out += self._on_speech_audio(event)
            elif isinstance(event, SpeechEnded):
                out += self._on_speech_ended(event)
            elif isinstance(event, SilenceStarted):
                # Only voiced time counts towards barge-in, not the trailing pause.
                self._pausing, self._silence_start = True, event.at_sample
            elif isinstance(event, SpeechResumed):
                self._pausing = False
                if self._speculated:
                    self._speculated = False
                    out.append(DiscardSpeculation(self._utterance))
        return out + self._maybe_speculate()

    def transcribed(self, utterance: int, transcript: Transcript) -> list[Command]:
        if self.closed or self._scenario is None:
            return []
        text = transcript.text.strip()
        if not text:
            log.debug("call %s: utterance %d was not words", self.call_id, utterance)
            self._listen_since_ms = self.now_ms
            return []
        self._turn += 1
        self._dtmf_full = False
        self._turns[self._turn] = _Turn(transcript=text)
        event = p.TranscriptEvent(self._turn, text, transcript.confidence, transcript.audio_ms)
        return [
            SendEvent(event),
            Understand(self._turn, text, self._scenario.name),
        ]

    def speculated(self, utterance: int, transcript: Transcript | None) -> list[Command]:
        """The transcript of the open utterance so far, decoded while the caller pauses
        (``SpeculateTranscription``; None: the ASR cannot).  While a digits slot of a
        known length is asked for, a transcript holding that many digits ends the turn
        now: the caller need not wait out ``digits_min_silence_ms``."""
        self._speculations_out = max(0, self._speculations_out - 1)
        if (
            transcript is None
            or self.closed
            or self._dialog is None
            or self._endpointer is None
            or utterance != self._utterance
            or not self._utterance_open
            or not self._pausing
            or self._speculations_out  # a later speculation is on its way
        ):
            return []
        spec = self._dialog.expected_slot
        if spec is None or spec.type != "digits" or spec.length is None:
            return []
        digits = extract_entities(transcript.text).get("digits")
        if not isinstance(digits, str) or len(digits) < spec.length:
            return []
        event = self._endpointer.end_now()
        return self._on_speech_ended(event) if event is not None else []

    def understood(
        self, turn: int, result: IntentResult | None, entities: Mapping[str, EntityValue]
    ) -> list[Command]:
        if self.closed or self._dialog is None or turn not in self._turns:
            return []
        record = self._turns[turn]
        intent = result.intent if result is not None else None
        confidence = result.confidence if result is not None else 0.0
        if intent is not None and confidence < self._dialog.scenario.settings.nlu_threshold:
            shown = "fallback"
        else:
            shown = intent or "fallback"
        record.intent, record.confidence = shown, confidence
        out: list[Command] = [
            SendEvent(p.IntentEvent(turn, shown, confidence, dict(entities)))
        ]
        user = UserInput(record.transcript, intent, confidence, dict(entities), "speech")
        return out + self._dialog_step(turn, self._dialog.handle(user))

    def synthesized(self, reply: int, index: int, pcm: Pcm) -> list[Command]:
        current = self._reply
        if self.closed or current is None or current.id != reply:
            return []  # a cancelled reply's late audio
        current.pending[index] = pcm
        out: list[Command] = []
        while current.sent in current.pending:
            audio = current.pending.pop(current.sent)
            if not current.started:
                current.started = True
                out += [current.log, SendEvent(p.BotSpeechStart(reply, current.text))]
                self._playout_end_ms = max(self._playout_end_ms, self.now_ms)
            data = encode(audio, self._encoding)
            out += [SendAudio(reply, frame) for frame in split_frames(data, self._frame_bytes)]
            duration_ms = len(audio) * 1000.0 / self._rate_hz
            current.playback.sent(duration_ms, self._playout_end_ms)
            self._playout_end_ms += duration_ms
            out.append(Mark(reply, current.sent, mark_name(reply, current.sent)))
            current.sent += 1
        return out + self._tick()

    def webhook_result(
        self, request_id: int, data: Mapping[str, Any] | None, error: str | None
    ) -> list[Command]:
        if self.closed or self._dialog is None:
            return []
        return self._dialog_step(self._turn, self._dialog.webhook_result(request_id, data, error))

    # ------------------------------------------------------------------ client messages

    def _on_start(self, message: p.Start) -> list[Command]:
        if self._dialog is not None:
            raise ProtocolError("second 'start'", close_code=p.CloseCode.OUT_OF_ORDER)
        name = message.scenario or self._config.default_scenario
        scenario = self._scenarios.get(name)
        if scenario is None:
            raise ProtocolError(
                f"unknown scenario {name!r}; this server has {', '.join(sorted(self._scenarios))}",
                close_code=p.CloseCode.UNKNOWN_SCENARIO,
            )
        self.call_id, self._scenario = message.call_id, scenario
        self._encoding = AudioEncoding(message.encoding)
        self._rate_hz = message.sample_rate_hz
        self._frame_bytes = frame_bytes(self._encoding, self._rate_hz, self._config.frame_ms)
        self._resampler = StreamResampler(
            in_rate_hz=self._rate_hz, out_rate_hz=self._config.asr_rate_hz
        )
        settings = scenario.settings
        endpoint = self._config.endpoint.updated(settings.endpointing)
        self._endpointer = Endpointer(
            endpoint,
            sample_rate_hz=self._config.asr_rate_hz,
            window_samples=self._config.vad_window_samples,
        )
        self._barge_in_samples = settings.barge_in_min_ms * self._config.asr_rate_hz // 1000
        self._dialog = DialogEngine(scenario)
        ready = p.Ready(message.call_id, scenario.name, message.encoding, self._rate_hz)
        out: list[Command] = [SendEvent(ready)]
        return out + self._dialog_step(0, self._dialog.start())

    def _on_dtmf(self, message: p.Dtmf) -> list[Command]:
        assert self._dialog is not None
        if message.digits == "#" and not self._dtmf and self._dtmf_full:
            # "1234#" keyed one by one: the entry was complete at 4; '#' only confirms it.
            self._dtmf_full = False
            return []
        self._dtmf_full = False
        out = self._barge_in() if self._bot_speaking() else []
        self._listen_since_ms = self.now_ms  # a caller typing is not a silent caller
        self._dtmf += message.digits
        spec = self._dialog.expected_slot
        digits = digits_from_dtmf(self._dtmf)
        done = "#" in self._dtmf or len(self._dtmf) >= _MAX_DTMF_KEYS or (
            spec is not None and spec.length is not None and len(digits) >= spec.length
        )
        if not done:
            return out
        self._dtmf_full = "#" not in self._dtmf
        self._dtmf = ""
        self._turn += 1
        self._turns[self._turn] = _Turn(transcript=digits, intent="dtmf", confidence=1.0)
        entities: dict[str, EntityValue] = {"digits": digits} if digits else {}
        if digits:
            entities["number"] = int(digits)
        event = p.IntentEvent(self._turn, "dtmf", 1.0, entities, source="dtmf")
        user = UserInput(digits, None, 0.0, entities, "dtmf")
        out.append(SendEvent(event))
        return out + self._dialog_step(self._turn, self._dialog.handle(user))

    def _on_stop(self, message: p.Stop) -> list[Command]:
        out = self._release()
        self.closed = True
        return [*out, CloseConnection(p.CloseCode.NORMAL, p.close_reason(message.reason))]

    # ------------------------------------------------------------------ speech

    def _on_speech_started(self, event: SpeechStarted) -> list[Command]:
        assert self._scenario is not None
        self._utterance += 1
        self._utterance_open = True
        self._utterance_barged = False
        self._pausing = False
        self._speculated = False
        self._listen_since_ms = None
        spec = self._dialog.expected_slot if self._dialog is not None else None
        domain = self._scenario.asr_domain(spec.type if spec is not None else None)
        if self._endpointer is not None:  # callers pause between groups of digits
            self._endpointer.expect_digits = spec is not None and spec.type == "digits"
        out: list[Command] = [StartTranscription(self._utterance, domain, event.audio)]
        return out + self._maybe_barge_in()

    def _on_speech_audio(self, event: SpeechAudio) -> list[Command]:
        if not self._utterance_open:
            return []
        out: list[Command] = [FeedTranscription(self._utterance, event.audio)]
        return out + self._maybe_barge_in()

    def _on_speech_ended(self, event: SpeechEnded) -> list[Command]:
        if not self._utterance_open or self._endpointer is None:
            return []
        self._utterance_open = False
        if self._bot_speaking() and not self._utterance_barged:
            # Too short to interrupt the bot (a cough, "mhm"): not a turn.
            return [CancelTranscription(self._utterance)]
        delay = self._endpointer.samples_seen - event.end_sample
        delay_ms = delay * 1000 // self._config.asr_rate_hz
        return [FinishTranscription(self._utterance, delay_ms)]

    def _maybe_speculate(self) -> list[Command]:
        if (
            not self._speculate_samples
            or not self._utterance_open
            or not self._pausing
            or self._speculated
            or self._endpointer is None
            or self._endpointer.samples_seen - self._silence_start < self._speculate_samples
        ):
            return []
        self._speculated = True
        self._speculations_out += 1
        return [SpeculateTranscription(self._utterance)]

    def _maybe_barge_in(self) -> list[Command]:
        if (
            self._endpointer is None
            or self._utterance_barged
            or self._pausing
            or not self._bot_speaking()
            or self._endpointer.speech_samples < self._barge_in_samples
        ):
            return []
        self._utterance_barged = True
        return self._barge_in()

    # ------------------------------------------------------------------ replies

    def _bot_speaking(self) -> bool:
        reply = self._reply
        if reply is None or reply.final is not None:
            return False  # the last words before transfer/hang-up are not interrupted
        return reply.sent < len(reply.sentences) or self.now_ms < self._playout_end_ms

    def _barge_in(self) -> list[Command]:
        reply = self._reply
        assert reply is not None
        self._reply = None
        heard = reply.playback.heard(self.now_ms, reply.text)
        self._playout_end_ms = self.now_ms
        log.info("call %s: barge-in on reply %d after %d sentences (%d ms)",
                 self.call_id, reply.id, heard.sentences, heard.ms)
        if self._dialog is not None:
            self._dialog.values["interrupted"] = heard.as_values()
        end = p.BotSpeechEnd(reply.id, reply.text, interrupted=True,
                             heard_sentences=heard.sentences, heard_ms=heard.ms)
        return [
            CancelReply(reply.id),
            SendEvent(p.Clear(reply.id)),
            SendEvent(end),
            BargedIn(reply.id, heard.sentences, heard.ms, heard.unheard),
        ]

    def _dialog_step(self, turn: int, outputs: list[Any]) -> list[Command]:
        assert self._dialog is not None and self._scenario is not None
        texts: list[str] = []
        final: EndCall | None = None
        out: list[Command] = []
        for item in outputs:
            if isinstance(item, Prompt):
                texts.append(item.text)
            elif isinstance(item, EndCall):
                final = item
            elif isinstance(item, WebhookRequest):
                out.append(CallWebhook(item.request_id, item.url, item.payload, item.timeout_ms))
        if not texts:
            if final is not None:
                out += self._end_call(final)
            return out
        if self._reply is not None:
            out += self._barge_in() if self._bot_speaking() else [CancelReply(self._reply.id)]
        self._reply_seq += 1
        text = " ".join(texts)
        sentences = split_sentences(text)
        record = self._turns.get(turn, _Turn())
        started = ReplyStarted(
            self._reply_seq, turn, record.transcript, record.intent, record.confidence,
            self._dialog.state.name, text,
        )
        self._reply = _Reply(self._reply_seq, turn, text, sentences, final, started,
                             Playback(sentences, self._marks))
        out += [
            Synthesize(self._reply_seq, i, sentence, self._rate_hz)
            for i, sentence in enumerate(sentences)
        ]
        return out

    def _end_call(self, final: EndCall) -> list[Command]:
        self.closed = True
        event: p.ServerEvent = (
            p.Transfer(final.detail) if final.kind == "transfer" else p.Hangup(final.detail)
        )
        return [
            *self._release(),
            SendEvent(event),
            CloseConnection(p.CloseCode.NORMAL, final.kind),
        ]

    def _tick(self) -> list[Command]:
        """Advance audio-time driven things: end of bot speech, no-input timeout."""
        reply = self._reply
        out: list[Command] = []
        if reply is not None and reply.sent == len(reply.sentences):
            if self.now_ms >= self._playout_end_ms:
                self._reply = None
                audio_ms = int(self._playout_end_ms)
                end = p.BotSpeechEnd(reply.id, reply.text, False, audio_ms)
                out.append(SendEvent(end))
                if reply.final is not None:
                    return out + self._end_call(reply.final)
                self._listen_since_ms = self.now_ms
        timeout_ms = self._scenario.settings.no_input_timeout_ms if self._scenario else 0
        if (
            self._reply is None
            and self._dialog is not None
            and self._dialog.listening
            and not self._utterance_open
            and self._listen_since_ms is not None
            and timeout_ms > 0
            and self.now_ms - self._listen_since_ms >= timeout_ms
        ):
            self._listen_since_ms = None
            out += self._dialog_step(self._turn, self._dialog.handle(UserInput(source="no_input")))
        return out

    def _release(self) -> list[Command]:
        out: list[Command] = []
        if self._utterance_open:
            self._utterance_open = False
            out.append(CancelTranscription(self._utterance))
        if self._reply is not None:
            out.append(CancelReply(self._reply.id))
            self._reply = None
        return out

    def _fail(self, exc: ProtocolError) -> list[Command]:
        log.warning("call %s: protocol error: %s", self.call_id or "-", exc)
        out = self._release()
        self.closed = True
        error = p.ErrorEvent(exc.close_code, str(exc), True)
        close = CloseConnection(exc.close_code, p.close_reason(str(exc)))
        return [*out, SendEvent(error), close]

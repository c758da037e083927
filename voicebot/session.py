"""The per-call state machine: sans-I/O, like python-websockets' protocol objects.

A :class:`Session` takes client inputs (``receive_message`` / ``receive_audio``,
``mark_played``, ``protocol_error``; ``receive_text`` / ``receive_bytes`` decode
native frames first) and engine results (``speech_probabilities``, ``transcribed``,
``speculated``, ``turn_verdict``, ``understood``, ``synthesized``, ``webhook_result``)
and returns :mod:`voicebot.commands` for its runtime to carry out.  It never awaits,
sleeps, reads the clock or runs a model: time is counted in audio samples received.

The Session routes; its parts keep the state, each a pure state machine tested
alone: :class:`~voicebot.session_turns.TurnTaking` (the caller's utterances,
transcription, barge-in, and with :class:`~voicebot.session_turn_end.TurnEnding` the
end-of-turn policy), :class:`~voicebot.session_replies.Replies` (the
bot's replies, synthesis and playout) and :class:`~voicebot.session_keys.KeyEntry`
(DTMF), :class:`~voicebot.session_privacy.CallPrivacy` (masks, recording pauses).
The Session itself holds the call's set-up, the dialog, the turn notes and the
no-input timer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from voicebot import protocol as p
from voicebot import session_end as closing
from voicebot.audio.codecs import AudioEncoding, decode
from voicebot.audio.framer import Framer
from voicebot.audio.resample import StreamResampler
from voicebot.commands import (
    CallWebhook,
    Command,
    DetectSpeech,
    SendEvent,
    Understand,
)
from voicebot.dialog.engine import DialogEngine, EndCall, UserInput, sort_outputs
from voicebot.dialog.scenario import Scenario
from voicebot.errors import ProtocolError
from voicebot.session_ahead import Ahead, RepliesAhead, spoken_input
from voicebot.session_keys import KeyEntry, KeyPressKind
from voicebot.session_privacy import CallPrivacy, TurnNote
from voicebot.session_replies import Replies
from voicebot.session_setup import SessionConfig, open_call
from voicebot.session_turns import TurnTaking
from voicebot.types import EntityValue, IntentResult, Pcm, Transcript, Understanding

__all__ = ["Session", "SessionConfig"]

log = logging.getLogger(__name__)


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
        self.start: p.Start | None = None  # the call's start message (its metadata)
        self.closed = False
        self._scenario: Scenario | None = None
        self._dialog: DialogEngine | None = None
        self._encoding = AudioEncoding.PCM16
        self._rate_hz = 0
        self._resampler: StreamResampler | None = None
        self._framer = Framer(config.vad_window_samples)
        self._listening: TurnTaking | None = None  # the parts, from 'start' on
        self._replies: Replies | None = None
        self._ahead: RepliesAhead | None = None  # speculative replies, when on
        self._keys = KeyEntry()
        self._privacy: CallPrivacy | None = None
        self._input_samples = 0  # caller audio received, at the call's rate: the clock
        self._turn = 0
        self._turns: dict[int, TurnNote] = {0: TurnNote()}
        self._no_input = closing.NoInputTimer()
        self._text_handlers: dict[str, Callable[[Any], list[Command]]] = {
            "start": self._on_start, "dtmf": self._on_dtmf, "stop": self._on_stop}

    # ------------------------------------------------------------------ client frames

    @property
    def now_ms(self) -> float:
        return self._input_samples * 1000.0 / self._rate_hz if self._rate_hz else 0.0

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
                raise ProtocolError(f"'{message.type}' before 'start'",
                                    close_code=p.CloseCode.OUT_OF_ORDER)
            return self._text_handlers[message.type](message)
        except ProtocolError as exc:
            return self._fail(exc)

    def protocol_error(self, exc: ProtocolError) -> list[Command]:
        """The transport could not decode a message: report it and close the call."""
        return [] if self.closed else self._fail(exc)

    def mark_played(self, name: str) -> list[Command]:
        """The provider played (or cleared) everything up to mark ``name``."""
        if not self.closed and self._replies is not None:
            self._replies.mark_played(name)
        return []

    def receive_bytes(self, data: bytes) -> list[Command]:  # a native binary audio frame
        return self.receive_audio(data)

    def receive_audio(self, data: bytes) -> list[Command]:
        """Caller audio in the call's encoding."""
        if self.closed:
            return []
        if self._dialog is None or self._resampler is None:
            return self._fail(ProtocolError("audio before 'start'",
                                            close_code=p.CloseCode.OUT_OF_ORDER))
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
        out, started = self._release(), not self.closed and self._dialog is not None
        self.closed = True
        return out + (closing.caller_gone() if started else [])

    # ------------------------------------------------------------------ engine results

    def speech_probabilities(self, pcm: Pcm, probabilities: Any) -> list[Command]:
        listening = self._listening
        if self.closed or listening is None:
            return []
        out: list[Command] = []
        slot_type, slot_length = self._slot()
        for event in listening.hear(pcm, probabilities):
            step = listening.on_event(event, bot_speaking=self._bot_speaking(),
                                      slot_type=slot_type, slot_length=slot_length)
            out += step.commands
            if step.resumed and self._ahead is not None:
                out += self._ahead.discard(listening.utterance)
            if step.speech_started:
                self._no_input.stop()
            if step.barge_in:
                out += self._barge_in()
        return out + listening.tick(bot_speaking=self._bot_speaking())

    def transcribed(self, utterance: int, transcript: Transcript) -> list[Command]:
        if self.closed or self._scenario is None:
            return []
        text = transcript.text.strip()
        end = self._listening.end_of(utterance) if self._listening is not None else None
        if not text:
            log.debug("call %s: utterance %d was not words", self.call_id, utterance)
            self._no_input.restart(self.now_ms)
            return []
        self._turn += 1
        self._keys.spoken_turn()
        expected = self._dialog.expected_slot if self._dialog is not None else None
        self._turns[self._turn] = TurnNote(transcript=text, source="speech", end=end,
                                           sensitive=CallPrivacy.sensitive_slot(expected))
        event = p.TranscriptEvent(self._turn, text, transcript.confidence, transcript.audio_ms)
        ahead, used = self._ahead.use(utterance, text, self._turn) if self._ahead else (None, [])
        if ahead is None:
            return [*used, SendEvent(event), Understand(self._turn, text, self._scenario.name)]
        # A speculation was made from this very transcript: its NLU answers the turn.
        return [*used, SendEvent(event), *(self._answer(ahead) if ahead.understood else [])]

    def speculated(self, utterance: int, transcript: Transcript | None) -> list[Command]:
        """The transcript of the open utterance so far, decoded while the caller pauses
        (``SpeculateTranscription``; None: the ASR cannot); it may end the turn (a
        digit string of the slot's length, a yes/no answer: ``TurnTaking.speculated``)."""
        if (listening := self._listening) is None or self.closed or self._scenario is None:
            return []
        out = list(listening.speculated(utterance, transcript, expecting=self._slot(),
                                        bot_speaking=self._bot_speaking()).commands)
        text = transcript.text.strip() if transcript is not None else ""
        if (self._ahead is not None and text and listening.pausing_in(utterance)
                and self._replies is not None and self._replies.current is None):
            out += self._ahead.start(utterance, text, self._scenario.name)  # a reply ahead
        return out

    def understood_ahead(self, speculation: int, result: Understanding | None) -> list[Command]:
        """The NLU of speculative reply ``speculation`` answered (None: it failed)."""
        ahead = self._ahead.get(speculation) if self._ahead is not None else None
        if self.closed or ahead is None or self._ahead is None or self._dialog is None:
            return []
        if ahead.turn is None:  # the caller has not finished: what would the bot say?
            return self._ahead.understood(ahead, result, self._dialog)
        ahead.understood, ahead.understanding = True, result
        return self._answer(ahead)

    def synthesized_ahead(self, speculation: int, pcm: Pcm | None) -> list[Command]:
        """The first sentence of speculative reply ``speculation`` (None: it failed)."""
        ahead = self._ahead.get(speculation) if self._ahead is not None else None
        if self.closed or ahead is None or self._ahead is None:
            return []
        return self._ahead.synthesized(ahead, pcm, self.now_ms) + self._tick()

    def _answer(self, ahead: Ahead) -> list[Command]:
        """The turn that used speculation ``ahead`` goes on from its NLU result."""
        assert ahead.turn is not None and self._scenario is not None
        if ahead.understanding is None:
            return [Understand(ahead.turn, ahead.text, self._scenario.name)]
        return self.understood(ahead.turn, ahead.understanding.intent,
                               ahead.understanding.entities)

    def turn_verdict(self, request_id: int, complete_prob: float) -> list[Command]:
        """The end-of-turn model's answer to ``DetectTurnEnd`` ``request_id``."""
        if self.closed or self._listening is None:
            return []
        return self._listening.verdict(request_id, complete_prob, bot_speaking=self._bot_speaking())

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
        if record.sensitive and self._privacy is not None:
            self._privacy.given(record.transcript, entities)
        out: list[Command] = [
            SendEvent(p.IntentEvent(turn, shown, confidence, dict(entities)))
        ]
        user = spoken_input(record.transcript, result, entities)
        return out + self._dialog_step(turn, self._dialog.handle(user))

    def synthesized(self, reply: int, index: int, pcm: Pcm) -> list[Command]:
        if self.closed or self._replies is None:
            return []
        return self._replies.synthesized(reply, index, pcm, self.now_ms) + self._tick()

    def webhook_result(
        self, request_id: int, data: Mapping[str, Any] | None, error: str | None
    ) -> list[Command]:
        if self.closed or self._dialog is None:
            return []
        outputs = self._dialog.webhook_result(request_id, data, error)
        return self._dialog_step(self._turn, outputs, source="webhook")

    # ------------------------------------------------------------------ client messages

    def _on_start(self, message: p.Start) -> list[Command]:
        if self._dialog is not None:
            raise ProtocolError("second 'start'", close_code=p.CloseCode.OUT_OF_ORDER)
        call = open_call(message, scenarios=self._scenarios, config=self._config,
                         marks=self._marks)
        self.call_id, self._scenario, self._dialog = message.call_id, call.scenario, call.dialog
        self._privacy, self.start = CallPrivacy(call.scenario), message
        self._encoding, self._rate_hz = call.encoding, call.rate_hz
        self._resampler, self._listening, self._replies, self._ahead = (
            call.resampler, call.listening, call.replies, call.ahead)
        ready = p.Ready(message.call_id, call.scenario.name, message.encoding, self._rate_hz)
        out: list[Command] = [SendEvent(ready)]
        return out + self._dialog_step(0, call.dialog.start())

    def _on_dtmf(self, message: p.Dtmf) -> list[Command]:
        assert self._dialog is not None
        spec = self._dialog.expected_slot
        press = self._keys.press(message.digits,
                                 expected_length=spec.length if spec is not None else None)
        if press.kind is KeyPressKind.CONFIRMATION:
            return []
        out = self._barge_in() if self._bot_speaking() else []
        self._no_input.restart(self.now_ms)  # a caller typing is not a silent caller
        if press.kind is KeyPressKind.PENDING:
            return out
        self._turn += 1
        sensitive = CallPrivacy.sensitive_slot(spec)
        self._turns[self._turn] = TurnNote(transcript=press.digits, intent="dtmf", confidence=1.0,
                                        source="dtmf", sensitive=sensitive)
        entities = press.entities()
        if sensitive and self._privacy is not None:
            self._privacy.given(press.digits, entities)
        out.append(SendEvent(p.IntentEvent(self._turn, "dtmf", 1.0, entities, source="dtmf")))
        user = UserInput(press.digits, None, 0.0, entities, "dtmf")
        return out + self._dialog_step(self._turn, self._dialog.handle(user))

    def _on_stop(self, message: p.Stop) -> list[Command]:
        self.closed = True
        return self._release() + closing.caller_stop(message.reason)

    # ------------------------------------------------------------------ replies

    def _slot(self) -> tuple[str | None, int | None]:  # the type and length asked for
        spec = self._dialog.expected_slot if self._dialog is not None else None
        return (spec.type, spec.length) if spec is not None else (None, None)

    def _bot_speaking(self) -> bool:
        return self._replies is not None and self._replies.speaking(self.now_ms)

    def _barge_in(self) -> list[Command]:
        assert self._replies is not None and self._replies.current is not None
        reply_id = self._replies.current.id
        out, heard = self._replies.barge_in(self.now_ms)
        log.info("call %s: barge-in on reply %d after %d sentences (%d ms)",
                 self.call_id, reply_id, heard.sentences, heard.ms)
        if self._dialog is not None:
            self._dialog.values["interrupted"] = heard.as_values()
        return self._private(out)

    def _private(self, out: list[Command]) -> list[Command]:
        """``out`` masked, then a recording pause or resume if due (CallPrivacy.update)."""
        if self._privacy is None or self._dialog is None or self._replies is None:
            return out
        current = self._replies.current
        return self._privacy.update(out, expecting=self._dialog.expected_slot,
                                    playing=current.id if current is not None else None)

    def _dialog_step(self, turn: int, outputs: list[Any],
                     source: str | None = None) -> list[Command]:
        """The dialog's ``outputs`` for ``turn`` (``source``: no_input, webhook)."""
        assert self._dialog is not None and self._replies is not None
        assert self._privacy is not None
        self._privacy.learn(self._dialog.slots)
        step = sort_outputs(outputs)
        out: list[Command] = [CallWebhook(w.request_id, w.url, w.payload, w.timeout_ms)
                              for w in step.webhooks]
        if not step.texts:
            return self._private(out + (self._end_call(step.final) if step.final else []))
        replies = self._replies
        if replies.current is not None:
            out += self._barge_in() if self._bot_speaking() else replies.cancel()
        text = " ".join(step.texts)
        note = self._turns.get(turn, TurnNote()) if source is None else TurnNote(source=source)
        started = self._privacy.reply_started(replies.next_id(), turn, note, text=text,
                                              state=self._dialog.state.name,
                                              slots=self._dialog.slots, retried=step.retried)
        out += replies.start(text=text, final=step.final, log_record=started)
        if self._ahead is not None:  # its first sentence may be held already
            out = self._ahead.claim_first_sentence(turn, out, self.now_ms)
        return self._private(out)

    def _end_call(self, final: EndCall) -> list[Command]:
        self.closed = True
        return self._release() + closing.dialog_end(final)

    def _tick(self) -> list[Command]:
        """Advance audio-time driven things: end of bot speech, no-input timeout."""
        out: list[Command] = []
        finished = self._replies.finished(self.now_ms) if self._replies is not None else None
        if finished is not None:
            reply, end = finished
            out.append(end)
            if reply.final is not None:
                return out + self._end_call(reply.final)
            self._no_input.restart(self.now_ms)
            out = self._private(out)
        timeout_ms = self._scenario.settings.no_input_timeout_ms if self._scenario else 0
        waiting = (self._replies is not None and self._replies.current is None
                   and self._listening is not None and not self._listening.open
                   and self._dialog is not None and self._dialog.listening)
        if self._dialog is not None and self._no_input.expired(
                self.now_ms, timeout_ms=timeout_ms, waiting=waiting):
            no_input = self._dialog.handle(UserInput(source="no_input"))
            out += self._dialog_step(self._turn, no_input, source="no_input")
        return out

    def _release(self) -> list[Command]:
        out = self._listening.release() if self._listening is not None else []
        out += self._ahead.void() if self._ahead is not None else []
        return out + (self._replies.cancel() if self._replies is not None else [])

    def _fail(self, exc: ProtocolError) -> list[Command]:
        log.warning("call %s: protocol error: %s", self.call_id or "-", exc)
        reason, self.closed = self._privacy.redactor.text(str(exc)) if self._privacy else "", True
        return self._release() + closing.protocol_failure(exc, reason, self._dialog is not None)

"""The bot's replies in one call: synthesis asked for, audio sent in order, playout.

A pure part of :class:`voicebot.session.Session`: it is told the audio clock
(``now_ms``, counted from the caller's samples) and returns commands.  A reply
is a text cut into sentences; each sentence is synthesized on its own
(:class:`~voicebot.commands.Synthesize`), and its audio goes out in sentence
order however the results arrive, each sentence followed by a mark.  A reply is
*speaking* while sentences are still to be sent or the audio sent has not yet
played out; it is *finished* when all of it has played.  A reply that ends the
call (``final``) is never interrupted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.audio.framer import split_frames
from voicebot.commands import (
    BargedIn,
    CancelReply,
    Command,
    Mark,
    ReplyStarted,
    SendAudio,
    SendEvent,
    Synthesize,
)
from voicebot.dialog.engine import EndCall
from voicebot.playback import Heard, Playback, mark_name, parse_mark
from voicebot.text import split_sentences
from voicebot.types import Pcm

__all__ = ["Replies", "Reply"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Reply:
    """One reply being synthesized, sent and played."""

    id: int
    text: str
    sentences: list[str]
    final: EndCall | None
    log: ReplyStarted
    playback: Playback
    sent: int = 0  # sentences whose audio went out
    started: bool = False
    pending: dict[int, Pcm] = field(default_factory=dict)


class Replies:
    """The reply in progress (at most one) and where its playout ends."""

    def __init__(self, *, encoding: AudioEncoding, rate_hz: int, frame_bytes: int,
                 marks: bool) -> None:
        """``marks``: the transport reports played marks, so what the caller heard
        comes from them rather than from the audio clock alone."""
        self._encoding = encoding
        self._rate_hz = rate_hz
        self._frame_bytes = frame_bytes
        self._marks = marks
        self._seq = 0
        self._playout_end_ms = 0.0
        self.current: Reply | None = None

    def next_id(self) -> int:
        """The id the next reply will have."""
        return self._seq + 1

    def speaking(self, now_ms: float) -> bool:
        """The bot is talking and may be interrupted."""
        reply = self.current
        if reply is None or reply.final is not None:
            return False  # the last words before transfer/hang-up are not interrupted
        return reply.sent < len(reply.sentences) or now_ms < self._playout_end_ms

    def start(self, *, text: str, final: EndCall | None,
              log_record: ReplyStarted) -> list[Command]:
        """A new reply (``log_record.reply`` is :meth:`next_id`; the one before must
        have been ended: :meth:`barge_in` or :meth:`cancel`): the synthesis of each
        of its sentences."""
        if self.current is not None:
            raise RuntimeError(f"reply {self.current.id} is still in progress")
        self._seq += 1
        sentences = split_sentences(text)
        self.current = Reply(self._seq, text, sentences, final, log_record,
                             Playback(sentences, self._marks))
        return [Synthesize(self._seq, i, sentence, self._rate_hz)
                for i, sentence in enumerate(sentences)]

    def synthesized(self, reply_id: int, index: int, pcm: Pcm, now_ms: float) -> list[Command]:
        """Sentence ``index`` of ``reply_id`` is audio: send every sentence now in order."""
        current = self.current
        if current is None or current.id != reply_id:
            return []  # a cancelled reply's late audio
        current.pending[index] = pcm
        out: list[Command] = []
        while current.sent in current.pending:
            audio = current.pending.pop(current.sent)
            if not current.started:
                current.started = True
                out += [current.log, SendEvent(p.BotSpeechStart(reply_id, current.text))]
                self._playout_end_ms = max(self._playout_end_ms, now_ms)
            data = encode(audio, self._encoding)
            out += [SendAudio(reply_id, frame) for frame in split_frames(data, self._frame_bytes)]
            duration_ms = len(audio) * 1000.0 / self._rate_hz
            current.playback.sent(duration_ms, self._playout_end_ms)
            self._playout_end_ms += duration_ms
            out.append(Mark(reply_id, current.sent, mark_name(reply_id, current.sent)))
            current.sent += 1
        return out

    def mark_played(self, name: str) -> None:
        """The provider played (or cleared) everything up to mark ``name``."""
        parsed = parse_mark(name)
        reply = self.current
        if parsed is not None and reply is not None and parsed[0] == reply.id:
            reply.playback.mark_played(parsed[1])

    def barge_in(self, now_ms: float) -> tuple[list[Command], Heard]:
        """The caller interrupts the current reply: stop it and say how much was heard."""
        reply = self.current
        assert reply is not None
        self.current = None
        heard = reply.playback.heard(now_ms, reply.text)
        self._playout_end_ms = now_ms
        end = p.BotSpeechEnd(reply.id, reply.text, interrupted=True,
                             heard_sentences=heard.sentences, heard_ms=heard.ms)
        return [
            CancelReply(reply.id),
            SendEvent(p.Clear(reply.id)),
            SendEvent(end),
            BargedIn(reply.id, heard.sentences, heard.ms, heard.unheard),
        ], heard

    def finished(self, now_ms: float) -> tuple[Reply, SendEvent] | None:
        """The current reply if all of it has played out by ``now_ms`` (it is then no
        longer current), with its end event."""
        reply = self.current
        if reply is None or reply.sent < len(reply.sentences) or now_ms < self._playout_end_ms:
            return None
        self.current = None
        end = p.BotSpeechEnd(reply.id, reply.text, False, int(self._playout_end_ms))
        return reply, SendEvent(end)

    def cancel(self) -> list[Command]:
        """Drop the current reply without a word to the caller (the call is ending, or a
        reply not yet heard is replaced)."""
        reply, self.current = self.current, None
        return [CancelReply(reply.id)] if reply is not None else []

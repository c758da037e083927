"""Speech recognition with PocketSphinx 5 and per-scenario trigram language models.

:class:`PocketsphinxTranscriber` implements :class:`voicebot.engines.base.Transcriber`
at 16 kHz with the en-us acoustic model and dictionary bundled in the
``pocketsphinx`` wheel.

* ``prepare_domain`` turns a scenario's phrases into a small trigram ARPA model
  (:func:`voicebot.engines.arpa.build_arpa`: interpolated Witten-Bell, written as backoff) over the
  words the bundled dictionary knows, plus robustness phrases (single digits,
  every digit pair, yes/no words) so digit strings and short answers decode.
  Without a domain, the bundled general en-us model is used.
* Decoders are pooled.  Domain decoders hold only the prepared domains' words
  (created in ~10 ms; a small LM on the full 134k-word dictionary takes ~3 s to
  load), general ones the full dictionary and LM (~0.5 s).  A stream takes a
  free decoder, creating one only when none is free, and gives it back on
  ``finish`` / ``cancel``.  A decoder that missed a ``prepare_domain`` while
  busy catches up when next taken.
* ``feed`` decodes incrementally; ``finish`` runs only the flat second pass
  (``second_pass=False`` skips it: ~2 ms instead of ~35 ms, fewer digits right).
* Acoustic robustness: a fixed -50 dBFS noise floor is mixed in (band-limited
  8 kHz telephony and digital silence otherwise leave empty mel bands), and the
  cepstral mean a finished utterance ends with seeds the next stream's, on any
  decoder (the channel adapts across utterances as in one pocketsphinx decoder).

Streams are used from one worker thread at a time; the pools, the domain
registry and the channel mean are guarded by a lock.  No threads are created.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicebot.engines.arpa import (
    DIGIT_PAIR_WEIGHT,
    DIGIT_PAIRS,
    ROBUSTNESS_PHRASES,
    build_arpa,
    normalize_phrase,
)
from voicebot.engines.base import Pcm, Transcript
from voicebot.errors import EngineError, EngineUnavailableError

__all__ = ["PocketsphinxStream", "PocketsphinxTranscriber"]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
_GENERAL_SEARCH = "general"
_DOMAIN_PREFIX = "domain:"
_NOISE_SEED = 20240611
_CMN_MIN_SAMPLES = SAMPLE_RATE_HZ // 2  # shorter utterances do not update the channel mean

@dataclass(slots=True)
class _Domain:
    arpa: str
    version: int


@dataclass(slots=True)
class _PooledDecoder:
    decoder: Any
    general: bool  # full dictionary + general LM, for ``domain=None``
    entries: set[str] = field(default_factory=set)  # dictionary entries added
    versions: dict[str, int] = field(default_factory=dict)  # domain -> LM version loaded


class PocketsphinxStream:
    """One utterance on a pooled decoder; see :class:`PocketsphinxTranscriber`."""

    def __init__(
        self, owner: PocketsphinxTranscriber, pooled: _PooledDecoder, *, noise: Pcm | None
    ) -> None:
        self._owner = owner
        self._pooled: _PooledDecoder | None = pooled
        self._noise = noise
        self._samples = 0

    def _decoder(self) -> Any:
        if self._pooled is None:
            raise EngineError("transcription stream already finished or cancelled")
        return self._pooled.decoder

    def feed(self, pcm: Pcm) -> None:
        """Decode ``pcm`` (16 kHz int16) incrementally."""
        decoder = self._decoder()
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise EngineError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
        if len(pcm) == 0:
            return
        if self._noise is not None:
            pcm = self._add_noise(pcm, self._noise)
        try:
            decoder.process_raw(pcm.tobytes(), False, False)
        except RuntimeError as exc:
            self._pooled = None  # a decoder that failed is not reused
            raise EngineError(f"pocketsphinx failed to process audio: {exc}") from exc
        self._samples += len(pcm)

    def _add_noise(self, pcm: Pcm, noise: Pcm) -> Pcm:
        """``pcm`` plus the looping noise-floor table, from where the last chunk stopped."""
        start = self._samples % len(noise)
        index = np.arange(start, start + len(pcm)) % len(noise)
        mixed = pcm.astype(np.int32) + noise[index]
        result: Pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
        return result

    def finish(self) -> Transcript:
        """End the utterance and return its transcript; the decoder goes back to the pool."""
        decoder = self._decoder()
        try:
            decoder.end_utt()
            hyp = decoder.hyp()
            cmn = str(decoder.get_cmn()) if self._samples >= _CMN_MIN_SAMPLES else None
        except RuntimeError as exc:
            self._pooled = None
            raise EngineError(f"pocketsphinx failed to finish the utterance: {exc}") from exc
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        confidence = min(max(float(hyp.prob), 0.0), 1.0) if hyp is not None and text else None
        self._release()
        if cmn is not None:
            self._owner._learn_cmn(cmn)
        audio_ms = self._samples * 1000 // SAMPLE_RATE_HZ
        return Transcript(text=text, confidence=confidence, audio_ms=audio_ms)

    def cancel(self) -> None:
        """Abandon the utterance; the decoder goes back to the pool.  Idempotent."""
        if self._pooled is None:
            return
        try:
            self._pooled.decoder.end_utt()
        except RuntimeError as exc:
            logger.warning("dropping a pocketsphinx decoder that failed to end: %s", exc)
            self._pooled = None
            return
        self._release()

    def _release(self) -> None:
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            self._owner._give_back(pooled)


class PocketsphinxTranscriber:
    """PocketSphinx en-us recognizer (16 kHz) with pools of reusable decoders.

    ``lm_weight``, ``word_insertion_penalty`` and ``beam`` override the
    pocketsphinx ``lw``, ``wip`` and ``beam`` settings; ``noise_floor_dbfs=None``
    and ``adapt_cmn=False`` turn the robustness measures off (see the module).
    """

    def __init__(
        self,
        *,
        lm_weight: float | None = None,
        word_insertion_penalty: float | None = None,
        beam: float | None = None,
        noise_floor_dbfs: float | None = -50.0,
        adapt_cmn: bool = True,
        second_pass: bool = True,
    ) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise EngineUnavailableError("pocketsphinx is not installed") from exc
        self._ps = pocketsphinx
        self._dict_path = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
        self._general_lm_path = pocketsphinx.get_model_path("en-us/en-us.lm.bin")
        for path in (self._dict_path, self._general_lm_path):
            if not os.path.exists(path):
                raise EngineUnavailableError(f"pocketsphinx model file missing: {path}")
        options: dict[str, Any] = {
            "loglevel": "FATAL",
            "samprate": SAMPLE_RATE_HZ,
            "fwdflat": second_pass,
        }
        if lm_weight is not None:
            options["lw"] = lm_weight
        if word_insertion_penalty is not None:
            options["wip"] = word_insertion_penalty
        if beam is not None:
            options["beam"] = beam
        self._options = options
        self._lock = threading.Lock()
        self._free: dict[bool, list[_PooledDecoder]] = {False: [], True: []}
        self._domains: dict[str, _Domain] = {}
        self._pronunciations: dict[str, str] = {}  # entry (e.g. "read(2)") -> phones
        self._next_version = 1
        self._decoders_created = 0
        self._adapt_cmn = adapt_cmn
        self._cmn: str | None = None  # channel cepstral mean learnt from finished utterances
        self._noise: Pcm | None = None
        if noise_floor_dbfs is not None:
            sigma = 32768.0 * 10.0 ** (noise_floor_dbfs / 20.0)
            table = np.random.default_rng(_NOISE_SEED).normal(0.0, sigma, SAMPLE_RATE_HZ)
            self._noise = np.clip(np.round(table), -32768, 32767).astype(np.int16)

    @property
    def sample_rate_hz(self) -> int:
        return SAMPLE_RATE_HZ

    @property
    def decoders_created(self) -> int:
        """How many decoders this transcriber has created so far."""
        with self._lock:
            return self._decoders_created

    @property
    def free_decoders(self) -> int:
        """How many decoders wait in the pools."""
        with self._lock:
            return sum(len(pool) for pool in self._free.values())

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        """Build a trigram model from ``phrases`` and load it into every free decoder."""
        sentences = [normalize_phrase(p) for p in (*phrases, *ROBUSTNESS_PHRASES)]
        entries = self._lookup({w for sentence in sentences for w in sentence})
        known = {entry.split("(", 1)[0] for entry in entries}
        dropped = sorted({w for sentence in sentences for w in sentence} - known)
        if dropped:
            logger.warning(
                "ASR domain %r: %d words not in the dictionary dropped: %s",
                name,
                len(dropped),
                " ".join(dropped),
            )
        if not known:
            raise EngineError(f"ASR domain {name!r} has no word the dictionary knows")
        arpa = build_arpa(
            [[w if w in known else None for w in sentence] for sentence in sentences],
            weighted=[(pair, DIGIT_PAIR_WEIGHT) for pair in DIGIT_PAIRS],
            extra_unigrams=sorted(known),
        )
        with self._lock:
            self._pronunciations.update(entries)
            self._domains[name] = _Domain(arpa=arpa, version=self._next_version)
            self._next_version += 1
            free, self._free[False] = self._free[False], []
        try:
            for pooled in free:
                self._sync(pooled)
        finally:
            with self._lock:
                self._free[False].extend(free)
        logger.info("prepared ASR domain %r: %d phrases, %d words", name, len(phrases), len(known))

    def _lookup(self, words: set[str]) -> dict[str, str]:
        """Dictionary entries (alternates included, base first) of ``words``."""
        entries: dict[str, str] = {}
        try:
            with open(self._dict_path, encoding="utf-8") as file:
                for line in file:
                    entry, _, phones = line.strip().partition(" ")
                    if entry.split("(", 1)[0] in words and phones:
                        entries[entry] = phones.strip()
        except OSError as exc:
            raise EngineUnavailableError(f"cannot read {self._dict_path}: {exc}") from exc
        return entries

    def open_stream(self, *, domain: str | None = None) -> PocketsphinxStream:
        """Start an utterance on a free decoder with ``domain``'s model (general if None)."""
        general = domain is None
        with self._lock:
            if domain is not None and domain not in self._domains:
                raise EngineError(f"ASR domain {domain!r} was not prepared")
            pool = self._free[general]
            pooled = pool.pop() if pool else None
        if pooled is None:
            pooled = self._new_decoder(general=general)
        try:
            if not general:
                self._sync(pooled)
            decoder = pooled.decoder
            decoder.activate_search(_GENERAL_SEARCH if domain is None else _DOMAIN_PREFIX + domain)
            with self._lock:
                if self._cmn is None:  # the configured cmninit, before any utterance
                    self._cmn = str(decoder.get_cmn())
                cmn = self._cmn
            decoder.set_cmn(cmn)  # every decoder of the pool starts from the channel mean
            decoder.start_utt()
        except BaseException as exc:
            self._give_back(pooled)
            if isinstance(exc, RuntimeError | KeyError):
                raise EngineError(f"cannot start an utterance: {exc}") from exc
            raise
        return PocketsphinxStream(self, pooled, noise=self._noise)

    def _new_decoder(self, *, general: bool) -> _PooledDecoder:
        options = dict(self._options)
        if not general:
            options.update(lm=None, dict=None)  # words and LMs are added by _sync
        try:
            decoder = self._ps.Decoder(**options)
            if general:
                decoder.add_lm_file(_GENERAL_SEARCH, self._general_lm_path)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot create a pocketsphinx decoder: {exc}") from exc
        with self._lock:
            self._decoders_created += 1
        logger.debug("created a %s pocketsphinx decoder", "general" if general else "domain")
        return _PooledDecoder(decoder=decoder, general=general)

    def _sync(self, pooled: _PooledDecoder) -> None:
        """Add to a domain decoder the words and domain models it lacks."""
        with self._lock:
            missing = [(e, p) for e, p in self._pronunciations.items() if e not in pooled.entries]
            domains = [
                (n, d) for n, d in self._domains.items() if pooled.versions.get(n) != d.version
            ]
        decoder = pooled.decoder
        try:
            for i, (entry, phones) in enumerate(missing):
                decoder.add_word(entry, phones, i == len(missing) - 1)
                pooled.entries.add(entry)
        except RuntimeError as exc:
            raise EngineError(f"cannot add words to the decoder: {exc}") from exc
        for name, domain in domains:
            self._load_arpa(decoder, _DOMAIN_PREFIX + name, domain.arpa)
            pooled.versions[name] = domain.version

    @staticmethod
    def _load_arpa(decoder: Any, search: str, arpa: str) -> None:
        fd, path = tempfile.mkstemp(prefix="voicebot-lm-", suffix=".arpa")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(arpa)
            decoder.add_lm_file(search, path)
        except (RuntimeError, OSError) as exc:
            raise EngineError(f"cannot load language model {search!r}: {exc}") from exc
        finally:
            os.unlink(path)

    def _learn_cmn(self, cmn: str) -> None:
        """Start later utterances from the cepstral mean a finished one ended with.

        The live mean adapts slowly (seconds); carrying it over is what a single
        pocketsphinx decoder does, here shared across the pool, as every caller
        comes through the same kind of telephone channel.
        """
        if self._adapt_cmn:
            with self._lock:
                self._cmn = cmn

    def _give_back(self, pooled: _PooledDecoder) -> None:
        with self._lock:
            self._free[pooled.general].append(pooled)

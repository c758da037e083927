"""A prompt audio cache in front of any :class:`~voicebot.engines.base.Synthesizer`.

Most of what a scripted bot says is fixed text.  :func:`static_prompt_sentences`
lists those sentences of a scenario; the server passes them to
:meth:`CachingSynthesizer.warm` at scenario load, so the greeting's first
audio needs no synthesis when a call starts.  The design:

* Only **registered** texts are cached: :meth:`~CachingSynthesizer.warm`
  registers its texts.  Any other text (a sentence with a balance or card
  number in it) goes straight to the inner synthesizer and is counted in
  ``bypassed``; caching those would fill memory and disk with one-off audio
  and keep callers' data on disk.  ``cache_all=True`` caches every text.
* Memory: an LRU by bytes (``max_memory_bytes``); an entry larger than the
  whole budget is not kept in memory.  An evicted registered text stays
  registered: it is reloaded from disk (or re-synthesized) on its next use.
* Disk (``cache_dir``, optional): ``cache_dir/<voice dir>/<key>.pcm`` where
  ``<voice dir>`` is the sanitized ``inner.voice_id`` plus a short hash of
  it and ``<key>`` is ``sha256(voice_id, text)``.  A file is a 16-byte header
  (magic, sample rate, sample count, little-endian) then the int16 LE
  samples, written to a temp file and ``os.replace``-d.  A short, corrupt or
  wrong-rate file is a miss and is rewritten.  Disk errors are logged and
  never fail a synthesis.  Nothing is ever deleted from disk.
* ``hits`` counts memory and disk hits, ``misses`` texts synthesized for the
  cache (``warm`` included).  Cached audio is returned read-only, not copied.
* Thread-safe: the index is guarded by a lock, synthesis and disk I/O run
  outside it, and two threads asking for the same missing text synthesize it
  once (the second waits for the first).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import string
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from voicebot.dialog.scenario import Ask, Say, Scenario, template_fields
from voicebot.engines.base import Pcm, Synthesizer
from voicebot.errors import ConfigError
from voicebot.text import split_sentences

__all__ = ["CachingSynthesizer", "static_prompt_sentences"]

logger = logging.getLogger(__name__)

_MAGIC = b"VBPCM01\n"
_HEADER = struct.Struct("<8sII")  # magic, sample rate (Hz), number of samples
_DEFAULT_MAX_MEMORY_BYTES = 64 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def static_prompt_sentences(scenario: Scenario) -> list[str]:
    """Every sentence the scenario can speak that has no template field, start state first.

    Covers ``say`` texts, slot prompts and reprompts and fallback reprompts,
    split with :func:`voicebot.text.split_sentences` as the session splits a
    reply; ``{{``/``}}`` escapes are resolved as the dialog renders them.
    """
    states = sorted(scenario.states.values(), key=lambda s: s.name != scenario.start)
    texts: list[str] = []
    for state in states:
        for action in state.actions:
            if isinstance(action, Say):
                texts.append(action.text)
            elif isinstance(action, Ask) and action.slot in scenario.slots:
                slot = scenario.slots[action.slot]
                texts += [slot.prompt, slot.reprompt]
        if state.fallback is not None and state.fallback.reprompt:
            texts.append(state.fallback.reprompt)
    for slot in scenario.slots.values():
        texts += [slot.prompt, slot.reprompt]
    sentences: dict[str, None] = {}
    for text in texts:
        for sentence in split_sentences(text):
            try:
                if template_fields(sentence):
                    continue
                spoken = string.Formatter().vformat(sentence, (), {})
            except (ValueError, IndexError, KeyError):  # a fragment of a field
                continue
            sentences.setdefault(spoken, None)
    return list(sentences)


class _Pending:
    """A cache fill in progress; other threads wanting the same text wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.pcm: Pcm | None = None


class CachingSynthesizer:
    """:class:`~voicebot.engines.base.Synthesizer` that caches ``inner``'s audio of static texts.

    See the module documentation for what is cached and where.
    """

    def __init__(
        self,
        inner: Synthesizer,
        *,
        cache_dir: Path | None = None,
        max_memory_bytes: int = _DEFAULT_MAX_MEMORY_BYTES,
        cache_all: bool = False,
    ) -> None:
        if max_memory_bytes < 0:
            raise ConfigError(f"max_memory_bytes must be >= 0, got {max_memory_bytes}")
        self._inner = inner
        self._voice_id = inner.voice_id
        self._sample_rate_hz = inner.sample_rate_hz
        self._max_memory_bytes = max_memory_bytes
        self._cache_all = cache_all
        self._voice_dir: Path | None = None
        if cache_dir is not None:
            voice_hash = hashlib.sha256(self._voice_id.encode()).hexdigest()[:8]
            name = _UNSAFE.sub("_", self._voice_id).strip("._")[:80]
            self._voice_dir = Path(cache_dir) / f"{name}-{voice_hash}"
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, Pcm] = OrderedDict()
        self._memory_bytes = 0
        self._registered: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        self.hits = self.misses = self.bypassed = 0  # see the module documentation

    @property
    def sample_rate_hz(self) -> int:
        return self._sample_rate_hz

    @property
    def voice_id(self) -> str:
        return self._voice_id

    @property
    def inner(self) -> Synthesizer:
        return self._inner

    @property
    def memory_bytes(self) -> int:
        """Bytes of audio held in memory now."""
        return self._memory_bytes

    @property
    def voice_dir(self) -> Path | None:
        """This voice's folder in the disk cache (None when memory only)."""
        return self._voice_dir

    def key(self, text: str) -> str:
        """The cache key of ``text``: sha256 of the voice id and the text."""
        return hashlib.sha256(f"{self._voice_id}\0{text}".encode()).hexdigest()

    def cached(self, text: str) -> bool:
        """Whether ``text``'s audio is in memory now."""
        with self._lock:
            return self.key(text) in self._memory

    def synthesize(self, text: str) -> Pcm:
        """Cached audio of ``text`` if registered (or ``cache_all``), else ``inner``'s."""
        key = self.key(text)
        with self._lock:
            pcm = self._memory.get(key)
            if pcm is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return pcm
            cacheable = self._cache_all or key in self._registered
            if not cacheable:
                self.bypassed += 1
        if not cacheable:
            return self._inner.synthesize(text)
        return self._fill(key, text)[0]

    def warm(self, texts: Iterable[str]) -> int:
        """Register ``texts`` and load or synthesize those not in memory; returns how many
        were synthesized (texts already on disk are only loaded)."""
        synthesized = 0
        for text in texts:
            if not text.strip():
                continue
            key = self.key(text)
            with self._lock:
                self._registered.add(key)
                if key in self._memory:
                    continue
            synthesized += self._fill(key, text)[1]
        return synthesized

    def _fill(self, key: str, text: str) -> tuple[Pcm, bool]:
        """Memory, else disk, else ``inner``; returns the audio and whether it was synthesized."""
        with self._lock:
            pcm = self._memory.get(key)
            if pcm is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return pcm, False
            pending = self._pending.get(key)
            leader = pending is None
            if pending is None:
                pending = self._pending[key] = _Pending()
        if not leader:
            pending.done.wait()
            if pending.pcm is None:  # the first thread failed: try ourselves
                return self._fill(key, text)
            with self._lock:
                self.hits += 1
            return pending.pcm, False
        try:
            pcm = self._load(key)
            synthesized = pcm is None
            if pcm is None:
                pcm = np.ascontiguousarray(self._inner.synthesize(text), dtype=np.int16)
                self._store(key, pcm)
            pcm.setflags(write=False)
            with self._lock:
                if synthesized:
                    self.misses += 1
                else:
                    self.hits += 1
                self._remember(key, pcm)
            pending.pcm = pcm
            return pcm, synthesized
        finally:
            with self._lock:
                del self._pending[key]
            pending.done.set()

    def _remember(self, key: str, pcm: Pcm) -> None:
        """Put ``pcm`` in the memory LRU, evicting the oldest (caller holds the lock)."""
        if pcm.nbytes > self._max_memory_bytes:
            logger.debug("prompt of %d bytes exceeds the memory cache; not kept", pcm.nbytes)
            return
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_bytes -= old.nbytes
        self._memory[key] = pcm
        self._memory_bytes += pcm.nbytes
        while self._memory_bytes > self._max_memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= evicted.nbytes

    def _path(self, key: str) -> Path | None:
        return None if self._voice_dir is None else self._voice_dir / f"{key}.pcm"

    def _load(self, key: str) -> Pcm | None:
        """The audio stored on disk under ``key``, or None (absent, unreadable or corrupt)."""
        path = self._path(key)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cannot read cached prompt %s: %s", path, exc)
            return None
        if len(data) >= _HEADER.size:
            magic, rate_hz, samples = _HEADER.unpack_from(data)
            if (
                magic == _MAGIC
                and rate_hz == self._sample_rate_hz
                and len(data) == _HEADER.size + 2 * samples
            ):
                pcm: Pcm = np.frombuffer(data, dtype="<i2", offset=_HEADER.size).astype(
                    np.int16, copy=False
                )
                return pcm
        logger.warning("corrupt cached prompt %s (%d bytes): synthesizing again", path, len(data))
        return None

    def _store(self, key: str, pcm: Pcm) -> None:
        """Write ``pcm`` to disk atomically (temp file + ``os.replace``); errors are logged."""
        path = self._path(key)
        if path is None:
            return
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as file:
                file.write(_HEADER.pack(_MAGIC, self._sample_rate_hz, len(pcm)))
                file.write(pcm.astype("<i2", copy=False).tobytes())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            logger.warning("cannot write cached prompt %s: %s", path, exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

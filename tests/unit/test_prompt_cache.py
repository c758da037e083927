"""Tests of the prompt audio cache (fake inner synthesizer) and the static prompt list."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from voicebot.dialog.scenario import Scenario
from voicebot.engines.base import Pcm, Synthesizer
from voicebot.engines.prompt_cache import CachingSynthesizer, static_prompt_sentences
from voicebot.testing import tone

__all__: list[str] = []

GREETING = "Hello, thank you for calling Example Bank card services."


class CountingSynthesizer:
    """A 16 kHz tone, 10 ms per character; counts calls per text, optionally slow."""

    def __init__(self, *, voice: str = "fake", delay_s: float = 0.0) -> None:
        self._voice = voice
        self._delay_s = delay_s
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def sample_rate_hz(self) -> int:
        return 16_000

    @property
    def voice_id(self) -> str:
        return f"counting:{self._voice}"

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def synthesize(self, text: str) -> Pcm:
        with self._lock:
            self.calls[text] = self.calls.get(text, 0) + 1
        if self._delay_s:
            time.sleep(self._delay_s)
        return tone(10 * len(text), frequency_hz=200.0 + len(text))


def test_implements_protocol() -> None:
    inner = CountingSynthesizer()
    cache: Synthesizer = CachingSynthesizer(inner)
    assert cache.sample_rate_hz == 16_000
    assert cache.voice_id == inner.voice_id


def test_hits_and_misses_in_memory() -> None:
    inner = CountingSynthesizer()
    cache = CachingSynthesizer(inner)
    assert cache.warm([GREETING, "How can I help you today?", GREETING]) == 2
    assert (cache.misses, cache.hits) == (2, 0)
    first = cache.synthesize(GREETING)
    second = cache.synthesize(GREETING)
    assert first is second
    assert not first.flags.writeable
    np.testing.assert_array_equal(first, inner.synthesize(GREETING))
    assert (cache.misses, cache.hits) == (2, 2)
    assert inner.calls[GREETING] == 2  # the warm-up and the comparison above


def test_unregistered_texts_bypass_the_cache() -> None:
    inner = CountingSynthesizer()
    cache = CachingSynthesizer(inner)
    text = "The current balance on your card ending in 4217 is 1,250.40 dollars."
    cache.synthesize(text)
    cache.synthesize(text)
    assert inner.calls[text] == 2
    assert (cache.hits, cache.misses, cache.bypassed) == (0, 0, 2)
    assert not cache.cached(text)


def test_cache_all_caches_every_text() -> None:
    inner = CountingSynthesizer()
    cache = CachingSynthesizer(inner, cache_all=True)
    cache.synthesize("anything")
    cache.synthesize("anything")
    assert inner.calls["anything"] == 1
    assert (cache.hits, cache.misses, cache.bypassed) == (1, 1, 0)


def test_disk_persistence_across_instances(tmp_path: Path) -> None:
    inner = CountingSynthesizer()
    first = CachingSynthesizer(inner, cache_dir=tmp_path)
    assert first.warm([GREETING]) == 1
    audio = first.synthesize(GREETING)
    assert first.voice_dir is not None
    files = list(first.voice_dir.glob("*.pcm"))
    assert len(files) == 1
    assert not list(first.voice_dir.glob("*.tmp"))

    second = CachingSynthesizer(inner, cache_dir=tmp_path)
    assert second.warm([GREETING]) == 0  # loaded from disk
    np.testing.assert_array_equal(second.synthesize(GREETING), audio)
    assert inner.calls[GREETING] == 1
    assert (second.hits, second.misses) == (2, 0)

    other_voice = CachingSynthesizer(CountingSynthesizer(voice="other"), cache_dir=tmp_path)
    assert other_voice.voice_dir != first.voice_dir
    assert other_voice.warm([GREETING]) == 1


def test_disk_hit_without_warm_when_cache_all(tmp_path: Path) -> None:
    inner = CountingSynthesizer()
    CachingSynthesizer(inner, cache_dir=tmp_path, cache_all=True).synthesize("Goodbye!")
    again = CachingSynthesizer(inner, cache_dir=tmp_path, cache_all=True)
    again.synthesize("Goodbye!")
    assert inner.calls["Goodbye!"] == 1
    assert again.hits == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "rate"])
def test_corrupt_file_is_a_miss_and_rewritten(tmp_path: Path, damage: str) -> None:
    inner = CountingSynthesizer()
    cache = CachingSynthesizer(inner, cache_dir=tmp_path)
    cache.warm([GREETING])
    assert cache.voice_dir is not None
    (path,) = cache.voice_dir.glob("*.pcm")
    good = path.read_bytes()
    broken = {
        "truncate": good[: len(good) - 3],
        "garbage": b"x" * len(good),
        "empty": b"",
        "rate": good[:8] + (8000).to_bytes(4, "little") + good[12:],
    }[damage]
    path.write_bytes(broken)

    fresh = CachingSynthesizer(inner, cache_dir=tmp_path)
    assert fresh.warm([GREETING]) == 1
    assert inner.calls[GREETING] == 2
    assert path.read_bytes() == good


def test_lru_eviction_by_bytes() -> None:
    inner = CountingSynthesizer()
    one = inner.synthesize("a" * 100).nbytes  # 1 s of audio: 32,000 bytes
    cache = CachingSynthesizer(inner, max_memory_bytes=2 * one, cache_all=True)
    a, b, c = "a" * 100, "b" * 100, "c" * 100
    cache.synthesize(a)
    cache.synthesize(b)
    cache.synthesize(a)  # a is now the most recent
    cache.synthesize(c)  # evicts b
    assert cache.memory_bytes == 2 * one
    assert cache.cached(a) and cache.cached(c) and not cache.cached(b)
    cache.synthesize("d" * 1000)  # larger than the whole budget: not kept
    assert cache.cached(a) and cache.cached(c)


def test_evicted_registered_text_comes_back() -> None:
    inner = CountingSynthesizer()
    one = inner.synthesize("a" * 100).nbytes
    cache = CachingSynthesizer(inner, max_memory_bytes=one)
    cache.warm(["a" * 100, "b" * 100])
    assert not cache.cached("a" * 100)
    cache.synthesize("a" * 100)
    cache.synthesize("a" * 100)
    assert inner.calls["a" * 100] == 3  # measuring, warm, re-fill after eviction
    assert cache.bypassed == 0


def test_thread_safety_single_flight() -> None:
    inner = CountingSynthesizer(delay_s=0.02)
    cache = CachingSynthesizer(inner, cache_all=True)
    texts = [f"Prompt number {i}." for i in range(8)]
    errors: list[BaseException] = []
    results: list[list[Pcm]] = [[], []]

    def work(worker: int) -> None:
        try:
            for _ in range(3):
                results[worker].extend(cache.synthesize(t) for t in texts)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(inner.calls[t] == 1 for t in texts)  # each synthesized once
    assert cache.hits + cache.misses == 2 * 3 * len(texts)
    for a, b in zip(results[0], results[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_failed_synthesis_is_not_cached() -> None:
    class Failing(CountingSynthesizer):
        def synthesize(self, text: str) -> Pcm:
            super().synthesize(text)
            if self.calls[text] == 1:
                raise RuntimeError("boom")
            return tone(100)

    inner = Failing()
    cache = CachingSynthesizer(inner, cache_all=True)
    with pytest.raises(RuntimeError):
        cache.synthesize("x")
    assert len(cache.synthesize("x")) == 1600
    assert cache.misses == 1


def test_static_prompt_sentences(bank_card: Scenario) -> None:
    sentences = static_prompt_sentences(bank_card)
    assert sentences[:2] == [GREETING, "How can I help you today?"]
    assert "Shall I block it now?" in sentences
    assert "Sorry, I need exactly four digits, for example four two one seven." in sentences
    assert "Is there anything else I can help you with?" in sentences
    assert "Thank you for calling Example Bank." in sentences
    assert "Goodbye!" in sentences
    assert not [s for s in sentences if "{" in s or "}" in s]
    assert not [s for s in sentences if s.startswith("The current balance on your card")]
    assert not [s for s in sentences if s.startswith("I could not find a card")]
    assert len(sentences) == len(set(sentences))


def test_static_prompt_sentences_resolve_escapes(bank_card: Scenario) -> None:
    from dataclasses import replace

    from voicebot.dialog.scenario import Say

    greeting = bank_card.states[bank_card.start]
    state = replace(greeting, actions=(Say("Press {{star}} now. Hi {name}."),))
    scenario = replace(bank_card, states={**bank_card.states, bank_card.start: state})
    sentences = static_prompt_sentences(scenario)
    assert sentences[0] == "Press {star} now."
    assert "Hi {name}." not in sentences

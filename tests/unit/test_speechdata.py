"""The accuracy benchmark's text side: normaliser, WER, reference parsing, data location."""

from __future__ import annotations

import gzip
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.accuracy_stacks import load_stack, parse_overrides, served_config_text
from bench.accuracy_text import (
    WordErrors,
    join_spacing,
    normalize_text,
    sum_errors,
    word_errors,
)
from bench.accuracy_wer import rescore, score
from bench.speechdata import (
    APT_INSTALL,
    SpeechDataMissingError,
    asterisk_prompts,
    librivox_clips,
    parse_asterisk_texts,
    parse_sphinx_transcription,
    read_wav,
    trim_silence,
)
from voicebot.errors import ConfigError

__all__: list[str] = []

WORDS = st.lists(st.sampled_from(["yes", "no", "card", "four", "2", "the", "balance"]),
                 max_size=12)


@pytest.mark.parametrize(("text", "expected"), [
    ("Activated.", "activated"),
    ("4217", "4 2 1 7"),
    ("four two one seven", "4 2 1 7"),
    ("forty two seventeen", "4 2 1 7"),
    ("Five hundred", "5 0 0"),
    ("one thousand two hundred thirty four", "1 2 3 4"),
    ("twenty-one apples", "2 1 apples"),
    ("dial 28.8 now", "dial 2 8 point 8 now"),
    ("$1,250.40", "1 2 5 0 point 4 0"),
    ("A.M.", "am"),
    ("Can't, won't; I'm here.", "can not will not i am here"),
    ("It's what's there", "it is what is there"),
    ("your party's extension", "your partys extension"),
    ("press * then #", "press star then pound"),
    ("at [@]", "at"),
    ('IAX (note: does not say "2")', "iax"),
    ("<s> he was </s>", "he was"),
    ("Mr. John", "mister john"),
    ("Call-Forward on Busy", "call forward on busy"),
    ("OK", "okay"),
    ("Represenatives witheld", "representatives withheld"),
    ("zed", "z"),
    ("the 18th", "the eighteenth"),
    ("21st and 100th", "2 0 first and hundredth"),
    ("twenty-first", "2 0 first"),
    ("no one", "no 1"),
    ("", ""),
])
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_numbers_written_any_way_compare_equal() -> None:
    forms = ("4217", "four two one seven", "forty two seventeen", "4 2 1 7", "four 217")
    assert len({normalize_text(f) for f in forms}) == 1


def test_a_repeated_number_costs_one_error_per_digit() -> None:
    errors = word_errors(normalize_text("sixteen").split(), normalize_text("16 16 16").split())
    assert errors.insertions == 4 and errors.reference_words == 2 and errors.wer == 2.0


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40))
def test_normalize_is_idempotent_and_clean(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert all(w.isalnum() and w == w.lower() for w in once.split())


def test_word_errors_counts_each_kind() -> None:
    e = word_errors("a b c d".split(), "a x c d e".split())
    assert (e.substitutions, e.deletions, e.insertions, e.reference_words) == (1, 0, 1, 4)
    assert e.wer == 0.5
    assert word_errors("a b c".split(), []).deletions == 3
    assert word_errors([], ["a"]).wer == float("inf")
    assert word_errors([], []).wer == 0.0


@given(WORDS)
def test_wer_of_identical_texts_is_zero(words: list[str]) -> None:
    assert word_errors(words, words) == WordErrors(reference_words=len(words))


@given(WORDS, WORDS)
def test_wer_bounds(reference: list[str], hypothesis: list[str]) -> None:
    e = word_errors(reference, hypothesis)
    assert abs(len(reference) - len(hypothesis)) <= e.errors <= max(len(reference),
                                                                    len(hypothesis))
    assert e.deletions - e.insertions == len(reference) - len(hypothesis)
    assert e.substitutions + e.deletions <= len(reference)
    assert e.errors == word_errors(hypothesis, reference).errors  # edit distance is symmetric
    if reference:
        assert e.wer >= 0 and (e.wer <= 1 or len(hypothesis) > len(reference))


@given(st.lists(st.tuples(WORDS, WORDS), max_size=5))
def test_corpus_wer_sums_errors_and_words(pairs: list[tuple[list[str], list[str]]]) -> None:
    parts = [word_errors(r, h) for r, h in pairs]
    total = sum_errors(parts)
    assert total.errors == sum(p.errors for p in parts)
    assert total.reference_words == sum(len(r) for r, _ in pairs)


ASTERISK_TEXT = """; Core Asterisk Sounds in English

activated: Activated.
beep: [this is a simple beep tone]
digits/4: four
silence/1: (1 second of silence)
letters/at: at [@]
missing-file: This one has no recording.
"""

SPHINX_TEXT = """<s> he was not an ill disposed young man </s> (clip-0880)
<s> he might even have been made amiable himself </s> (clip-0930)
"""


def test_parse_asterisk_texts() -> None:
    texts = parse_asterisk_texts(ASTERISK_TEXT)
    assert texts["digits/4"] == "four"
    assert texts["activated"] == "Activated."
    assert len(texts) == 6  # the comment and the blank line are not entries


def test_parse_sphinx_transcription() -> None:
    assert parse_sphinx_transcription(SPHINX_TEXT) == {
        "clip-0880": "he was not an ill disposed young man",
        "clip-0930": "he might even have been made amiable himself"}


def _wav(path: Path, pcm: np.ndarray, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def test_asterisk_prompts_keep_speech_with_a_recording(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    for name in ("activated", "beep", "digits/4", "silence/1", "letters/at"):
        _wav(sounds / f"{name}.wav", np.zeros(80, np.int16))
    texts = tmp_path / "core-sounds-en.txt.gz"
    texts.write_bytes(gzip.compress(ASTERISK_TEXT.encode()))
    prompts = asterisk_prompts(sounds_dir=sounds, texts_path=texts)
    assert [p.id for p in prompts] == ["activated", "digits/4", "letters/at"]
    assert prompts[1].path == sounds / "digits" / "4.wav" and prompts[1].text == "four"


def test_librivox_clips(tmp_path: Path) -> None:
    (tmp_path / "transcription").write_text(SPHINX_TEXT)
    _wav(tmp_path / "clip-0880.wav", np.ones(160, np.int16), rate=16000)
    clips = librivox_clips(data_dir=tmp_path)
    assert [c.id for c in clips] == ["clip-0880"]  # clip-0930 has no audio
    pcm, rate = read_wav(clips[0].path)
    assert rate == 16000 and len(pcm) == 160


def test_missing_packages_name_the_apt_command(tmp_path: Path) -> None:
    with pytest.raises(SpeechDataMissingError, match="asterisk-core-sounds-en-wav") as info:
        asterisk_prompts(sounds_dir=tmp_path / "absent")
    assert APT_INSTALL in str(info.value)
    with pytest.raises(SpeechDataMissingError, match="pocketsphinx-testdata"):
        librivox_clips(data_dir=tmp_path)


def test_trim_silence_keeps_a_margin() -> None:
    pcm = np.zeros(8000, np.int16)
    pcm[4000:4800] = 1000
    trimmed = trim_silence(pcm, 8000, margin_ms=10)
    assert len(trimmed) == 800 + 2 * 80
    assert len(trim_silence(np.zeros(100, np.int16), 8000)) == 0


def test_overrides_and_the_served_config(tmp_path: Path) -> None:
    assert parse_overrides(["asr.encoder_window=utterance"]) == {
        "asr": {"encoder_window": "utterance"}}
    with pytest.raises(ConfigError):
        parse_overrides(["window=utterance"])
    config = tmp_path / "bench-x.yaml"
    config.write_text("engines:\n  asr: pocketsphinx\n  tts: espeak\n"
                      "  options:\n    tts: {rate_wpm: 150}\n")
    stack = load_stack(str(config))
    assert stack.name == "x" and served_config_text(stack) == config.read_text()
    changed = load_stack(str(config), overrides={"tts": {"rate_wpm": "170"}})
    assert changed.config.engines.options["tts"]["rate_wpm"] == "170"
    assert "rate_wpm: '170'" in served_config_text(changed)
    with pytest.raises(ConfigError, match="known stacks"):
        load_stack("no-such-stack")


def test_scores_and_rescoring_from_the_texts() -> None:
    errors, degenerate = score("Press 1.", "press one press one press one")
    assert errors.errors == 4 and not degenerate
    errors, degenerate = score("Added.", "added, added, added")
    assert errors.errors == 2 and degenerate
    rows = [{"id": "a", "reference": "four two", "heard": "42", "utterances": 1,
             "words": 9, "errors": 9, "degenerate": True},
            {"id": "b", "reference": "Added.", "heard": "", "utterances": 0,
             "words": 1, "errors": 1, "degenerate": False}]
    result = rescore({"rows": rows, "wall_s": 1.0})
    assert (result["reference_words"], result["deletions"], result["wer"]) == (3, 1, 1 / 3)
    assert result["rows"][0]["errors"] == 0 and not result["rows"][0]["degenerate"]
    assert (result["empty"], result["sentences_wrong"], result["wall_s"]) == (1, 1, 1.0)


@pytest.mark.parametrize(("reference", "heard", "joined_ref", "joined_hyp"), [
    ("touchtone keypad", "touch tone keypad", "touchtone keypad", "touchtone keypad"),
    ("touch tone", "touchtone", "touchtone", "touchtone"),
    ("M I S D N", "misdn", "misdn", "misdn"),
    ("press 1 2", "press 12", "press 1 2", "press 1 2"),  # digits are never joined
    ("voice mail box", "voicemail box", "voicemail box", "voicemail box"),
    ("in valid choice", "invalid choice", "invalid choice", "invalid choice"),
    ("a b", "c", "a b", "c"),
])
def test_join_spacing(reference: str, heard: str, joined_ref: str, joined_hyp: str) -> None:
    ref, hyp = join_spacing(normalize_text(reference).split(), normalize_text(heard).split())
    assert (" ".join(ref), " ".join(hyp)) == (joined_ref, joined_hyp)


@given(st.lists(st.sampled_from(["a", "b", "ab", "1", "2", "12", "abc"]), max_size=12))
def test_join_spacing_of_equal_texts_keeps_them_equal(words: list[str]) -> None:
    ref, hyp = join_spacing(words, words)
    assert ref == hyp and word_errors(ref, hyp).errors == 0


def test_spacing_equivalence_keeps_the_reference_word_count() -> None:
    errors, _ = score("M I S D N", "misdn")
    assert (errors.errors, errors.reference_words) == (0, 5)
    strict, _ = score("M I S D N", "misdn", strict=True)
    assert (strict.errors, strict.reference_words) == (5, 5)
    errors, _ = score("touchtone", "touch tone")
    assert (errors.errors, errors.reference_words) == (0, 1)
    result = rescore({"rows": [{"id": "a", "reference": "file name", "heard": "filename",
                                "utterances": 1, "words": 2, "errors": 2,
                                "degenerate": False}]})
    assert (result["wer"], result["wer_strict"]) == (0.0, 1.0)

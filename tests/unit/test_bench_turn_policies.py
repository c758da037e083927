"""The turn-taking benchmark's end-of-turn policies: the REAL EndOfTurnPolicy driven from
the harness's windows, its turn-model requests answered by a scripted FakeTurnDetector
on tone clips (and by the REAL Smart Turn on a recorded Asterisk digit string), its
speculations by the labels; the telephone line."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bench.speechdata import ASTERISK_SOUNDS_DIR, ASTERISK_TEXTS
from bench.turns import PolicySpec, TurnOutcome, replay, session_today, silence_rule, vad_track
from bench.turns_data import Source, Span, TurnClip, assemble
from bench.turns_phone import LINE_SUFFIX, line_specs, on_phone, phone_pcm
from bench.turns_plan import Kind, TurnSpec, plan_turns
from bench.turns_policies import (
    ASR_DECODE_MS,
    LabelTranscripts,
    TurnModelAnswers,
    eot_policies,
    eot_policy,
)
from bench.turns_voices import ALLISON
from voicebot.engines.base import Pcm, SpeechDetector
from voicebot.engines.fakes import FakeSpeechDetector, FakeTurnDetector, tone
from voicebot.vad.turn_records import TurnPolicyConfig, TurnRule

__all__: list[str] = []

W = 512  # the VAD window, samples
RATE = 16_000
SEED = 4217
COST_MS = 60.0
HAVE_SOUNDS = (ASTERISK_SOUNDS_DIR / "digits" / "0.wav").is_file() and ASTERISK_TEXTS.is_file()


def _clip(parts: Sequence[tuple[str, int]], *, kind: Kind = Kind.PAUSED, expect: str = "free",
          length: int | None = None) -> TurnClip:
    """Stretches whole VAD windows long: ``("-", n)`` silence, ``("~", n)`` a labelled
    pause, anything else a tone whose words are that text."""
    pcm: list[Pcm] = []
    words: list[Span] = []
    pauses: list[Span] = []
    at = 0
    for what, windows in parts:
        n = windows * W
        span = Span(start_ms=at * 1000 / RATE, end_ms=(at + n) * 1000 / RATE)
        if what in ("-", "~"):
            pcm.append(np.zeros(n, np.int16))
            if what == "~":
                pauses.append(span)
        else:
            pcm.append(tone(n * 1000 // RATE))
            words.append(Span(start_ms=span.start_ms, end_ms=span.end_ms, text=what))
        at += n
    spec = TurnSpec(id="tones", kind=kind, category="digits-2+2" if length else "tones",
                    voice="tone", segments=("x",), expect=expect, digits_length=length,
                    pauses_ms=tuple(round(p.end_ms - p.start_ms) for p in pauses))
    return TurnClip(spec=spec, source=Source.SYNTHETIC, words=tuple(words),
                    pauses=tuple(pauses), join="tones", pcm=np.concatenate(pcm))


def _heard_ms(windows: int) -> float:
    """When the window ending after ``windows`` windows is heard (its 20 ms frame's end)."""
    frame = RATE * 20 // 1000
    return -(-windows * W // frame) * frame * 1000 / RATE


def _run(clip: TurnClip, spec: PolicySpec) -> TurnOutcome:
    return replay(clip, vad_track(clip, FakeSpeechDetector()), spec)


def _smart(fake: FakeTurnDetector, *, expect: bool = False, cost_ms: float | None = COST_MS,
           with_silence: bool = False) -> PolicySpec:
    return eot_policy("st", "test", TurnPolicyConfig(expectations=expect),
                      model=TurnModelAnswers(fake, cost_ms=cost_ms),
                      transcripts=LabelTranscripts(), with_silence=with_silence)


# lead 512 ms, "four two" 512 ms, a 320 ms gap, "one" 512 ms, a labelled 1280 ms pause,
# "seven" 512 ms, 3.2 s quiet: the turn model is asked at 200 ms into each
GAPPED = [("-", 16), ("four two", 16), ("-", 10), ("one", 16), ("~", 40), ("seven", 16),
          ("-", 100)]


def test_the_model_is_asked_at_each_short_pause_and_its_verdict_comes_back_later() -> None:
    fake = FakeTurnDetector(probs=[0.2, 0.9])
    out = _run(_clip(GAPPED), _smart(fake))
    # the pause starts after 58 windows (1856 ms); 200 ms later is the 65th window's end
    # (2080 ms, heard then); the verdict is back 60 ms later and ends the turn
    assert out.decided_ms == _heard_ms(65) + COST_MS == 2140.0
    assert out.cut_off and out.cut_pause_ms == 1280
    assert (out.rule, out.score) == ("model", 0.9)
    # it heard the turn from 300 ms before its onset (512 ms) to each pause: 1024, 1856 ms
    assert fake.heard == [(1024 - 212) * RATE // 1000, (1856 - 212) * RATE // 1000]


def test_below_the_threshold_the_policy_waits_up_to_its_max_silence() -> None:
    fake = FakeTurnDetector(probs=[0.2, 0.3, 0.4], default_prob=0.1)
    out = _run(_clip(GAPPED), _smart(fake))
    assert not out.cut_off and out.rule == "max_silence" and out.score == pytest.approx(0.4)
    # the turn ends after 114 windows; 1500 ms of silence later (47 windows)
    assert out.decided_ms == _heard_ms(114 + 47)
    assert len(fake.heard) == 3


def test_the_model_hears_the_pause_too_when_asked_to() -> None:
    fake = FakeTurnDetector(probs=[0.9])
    _run(_clip(GAPPED), _smart(fake, with_silence=True))
    assert fake.heard == [(1024 + 224 - 212) * RATE // 1000]  # up to the asking window's end


def test_a_verdict_on_a_pause_the_caller_has_left_is_ignored() -> None:
    """The model says "complete" at 7 windows (224 ms) into a 7-window pause; the caller
    speaks again before its answer is back: no cut-off, the turn ends at the last pause."""
    clip = _clip([("-", 16), ("four", 16), ("~", 7), ("two", 16), ("-", 100)])
    fake = FakeTurnDetector(probs=[1.0, 1.0])
    out = _run(clip, _smart(fake, cost_ms=100.0))
    assert not out.cut_off and out.rule == "model" and len(fake.heard) == 2
    assert out.latency_ms == pytest.approx(_heard_ms(55 + 7) + 100.0 - 55 * W * 1000 / RATE)


DIGITS = [("-", 16), ("four two", 16), ("~", 40), ("one seven", 16), ("-", 100)]


def test_a_digits_slot_waits_for_its_digits_through_the_pause_without_asking() -> None:
    fake = FakeTurnDetector()  # every verdict: complete
    clip = _clip(DIGITS, expect="digits", length=4)
    out = _run(clip, _smart(fake, expect=True))
    assert not out.cut_off and out.rule == "expectation" and fake.heard == []
    # the last pause starts after 88 windows; the labels' transcript is asked for at
    # 200 ms (the 95th window) and back ASR_DECODE_MS later
    assert out.decided_ms == _heard_ms(95) + ASR_DECODE_MS
    free = _run(clip, _smart(FakeTurnDetector(), expect=False))
    assert free.cut_off and free.rule == "model"


def test_a_yes_no_answer_ends_at_its_transcript() -> None:
    clip = _clip([("-", 16), ("yes please", 16), ("-", 100)], kind=Kind.COMPLETE,
                 expect="yes_no")
    fake = FakeTurnDetector(default_prob=0.0)  # the model alone would wait 1500 ms
    out = _run(clip, _smart(fake, expect=True))
    assert out.rule == "expectation" and not out.cut_off
    assert out.decided_ms == _heard_ms(32 + 7) + ASR_DECODE_MS
    assert _run(clip, _smart(FakeTurnDetector(default_prob=0.0))).rule == "max_silence"


def test_the_silence_rule_with_expectations_needs_no_model() -> None:
    spec = eot_policy("s", "test", TurnPolicyConfig(turn_policy=TurnRule.SILENCE),
                      model=None, transcripts=LabelTranscripts())
    complete = _clip([("-", 16), ("four two one seven", 16), ("-", 100)], kind=Kind.COMPLETE,
                     expect="digits", length=4)
    out = _run(complete, spec)
    assert out.rule == "expectation" and out.decided_ms == _heard_ms(32 + 7) + ASR_DECODE_MS
    paused = _run(_clip(DIGITS, expect="digits", length=4), spec)
    assert paused.rule == "silence" and paused.cut_off  # 800 ms while digits are expected
    assert paused.decided_ms == _heard_ms(32 + 25)


def test_answers_are_remembered_by_audio_and_their_cost_is_fixed_or_measured() -> None:
    fake = FakeTurnDetector(probs=[0.3, 0.8])
    fixed, measured = TurnModelAnswers(fake, cost_ms=60.0), TurnModelAnswers(fake)
    pcm = tone(500)
    assert fixed.ask(pcm) == (0.3, 60.0) and fixed.ask(pcm.copy()) == (0.3, 60.0)
    assert fixed.calls == 1 and len(fake.heard) == 1
    prob, spent_ms = measured.ask(pcm)
    assert prob == 0.8 and spent_ms == measured.times_ms[0] >= 0.0


def test_the_built_in_list() -> None:
    specs = eot_policies(TurnModelAnswers(FakeTurnDetector()))
    names = [s.name for s in specs]
    assert len(set(names)) == len(names) == 19
    assert {"smart-turn", "smart-turn+expect", "smart-turn-p300-t0.85", "smart-turn+expect-a",
            "silence-500+expect"} <= set(names)
    assert len({s.family for s in specs}) == 7


def test_the_phone_line_keeps_the_clip_and_its_labels() -> None:
    clip = _clip(GAPPED)
    phoned = on_phone(clip)
    assert phoned.id == clip.id and phoned.words == clip.words and phoned.pcm.dtype == np.int16
    assert len(phoned.pcm) == len(clip.pcm) and not np.array_equal(phoned.pcm, clip.pcm)
    loud = np.abs(clip.pcm) > 0
    error = np.abs(phoned.pcm[loud].astype(float) - clip.pcm[loud]).mean()
    assert error < 0.1 * np.abs(clip.pcm[loud]).mean()  # a 440 Hz tone passes the line
    assert np.abs(phone_pcm(np.zeros(4000, np.int16), rate_hz=RATE)).max() == 0
    (renamed,) = line_specs([silence_rule(500)], "phone")
    assert renamed.name == f"silence-500{LINE_SUFFIX}" and renamed.family.endswith("phone line")
    assert line_specs([silence_rule(500)], "wide")[0].name == "silence-500"


# ---------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def real() -> tuple[SpeechDetector, TurnModelAnswers]:
    from server.config import load_config
    from voicebot.engines.registry import EngineOptions, build_engine

    config = load_config()
    for needed in ("silero-vad/silero_vad.onnx", "smart-turn-v3.2"):
        if not (config.models_dir / needed).exists():
            pytest.skip(f"{needed} is not pulled (make models test-models)")
    options = EngineOptions(models_dir=config.models_dir, manifest=config.manifest)
    vad: SpeechDetector = build_engine("vad", "silero", EngineOptions(
        models_dir=config.models_dir, manifest=config.manifest, options={"model": "silero-vad"}))
    return vad, TurnModelAnswers(build_engine("turn", "smart-turn", options), cost_ms=COST_MS)


@pytest.mark.skipif(not HAVE_SOUNDS, reason="apt-get install -y asterisk-core-sounds-en-wav "
                    "asterisk-core-sounds-en")
def test_real_smart_turn_on_a_recorded_digit_string(
        real: tuple[SpeechDetector, TurnModelAnswers]) -> None:
    """Allison reads four digits as 2+2 with 1200 ms between the groups: the policy with
    the digits expectation waits the pause out and ends at the 200 ms speculation after
    her last digit, on both lines; Smart Turn alone is asked and answers a probability."""
    vad, model = real
    specs = {s.id: s for s in plan_turns(seed=SEED, voices=(ALLISON,))}
    paused = assemble(specs[f"{ALLISON}-digits-2+2-04-p"], seed=SEED, speech={})
    complete = assemble(specs[f"{ALLISON}-digits-2+2-04-c"], seed=SEED, speech={})
    policies = {s.name: s for s in eot_policies(model)}
    for clip in (paused, on_phone(paused)):
        out = replay(clip, vad_track(clip, vad), policies["smart-turn+expect"])
        assert out.rule == "expectation" and not out.cut_off
        assert out.latency_ms is not None and 200 + ASR_DECODE_MS <= out.latency_ms < 700
    alone = replay(complete, vad_track(complete, vad), policies["smart-turn"])
    assert model.calls >= 1 and 0 < model.times_ms[0] < 5000
    assert alone.rule in ("model", "max_silence") and alone.score is not None
    assert 0.0 <= alone.score <= 1.0 and not alone.cut_off
    today = replay(complete, vad_track(complete, vad), session_today())
    assert today.rule == "expectation"


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SOUNDS, reason="apt-get install -y asterisk-core-sounds-en-wav "
                    "asterisk-core-sounds-en")
def test_real_whisper_partials_end_a_recorded_digit_string(
        real: tuple[SpeechDetector, TurnModelAnswers]) -> None:
    from bench.turns_whisper import WHISPER_MODEL, load_whisper, whisper_policies
    from server.config import load_config

    config = load_config()
    if not (config.models_dir / WHISPER_MODEL).exists():
        pytest.skip(f"{WHISPER_MODEL} is not pulled (make models)")
    vad, model = real
    whisper = load_whisper(config.models_dir, config.manifest)
    (spec,) = whisper_policies(model, whisper)
    specs = {s.id: s for s in plan_turns(seed=SEED, voices=(ALLISON,))}
    complete = on_phone(assemble(specs[f"{ALLISON}-digits-2+2-04-c"], seed=SEED, speech={}))
    out = replay(complete, vad_track(complete, vad), spec)
    assert whisper.calls >= 1 and out.rule == "expectation" and not out.cut_off
    assert out.latency_ms is not None and out.latency_ms < 200 + whisper.total_ms + 300


def test_the_command_line_defaults() -> None:
    import argparse

    from bench.turns_cli import LINES, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert args.line == list(LINES) == ["wide", "phone"]
    assert args.turn_model_ms == 60.0 and not args.no_turn_model and not args.no_whisper
    args = parser.parse_args(["--line", "phone", "--turn-model-ms", "measured"])
    assert args.line == ["phone"] and args.turn_model_ms is None

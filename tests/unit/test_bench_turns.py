"""The turn-taking benchmark: its caller turns (deterministic, labels that hold) and its
harness (cut-offs and latencies on tone clips with known gaps, and the real Silero VAD
on a real recorded digit string)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bench.speechdata import ASTERISK_SOUNDS_DIR, ASTERISK_TEXTS
from bench.turns import (
    HeardWindow,
    PolicySpec,
    TurnContext,
    TurnDecision,
    TurnOutcome,
    replay,
    run_policies,
    session_today,
    silence_rule,
    vad_track,
)
from bench.turns_cli import load_policies
from bench.turns_data import TRAILING_SILENCE_MS, Source, Span, TurnClip, assemble, load_turns
from bench.turns_plan import PAUSES_MS, Kind, TurnSpec, plan_turns
from bench.turns_report import summarize
from bench.turns_voices import ALLISON, ESPEAK, LOUD, PIPER, PIPER_VOICE, synthesize
from voicebot.engines.base import Pcm, SpeechDetector
from voicebot.engines.fakes import FakeSpeechDetector, tone

__all__: list[str] = []

W = 512  # the VAD window, samples
RATE = 16_000
SEED = 4217
HAVE_SOUNDS = (ASTERISK_SOUNDS_DIR / "digits" / "0.wav").is_file() and ASTERISK_TEXTS.is_file()
needs_sounds = pytest.mark.skipif(not HAVE_SOUNDS, reason="apt-get install -y "
                                  "asterisk-core-sounds-en-wav asterisk-core-sounds-en")


def _models() -> tuple[Path, Path]:
    from server.config import load_config

    config = load_config()
    return config.models_dir, config.manifest


# ---------------------------------------------------------------------- tone clips


def _clip(parts: Sequence[tuple[str, int]], *, kind: Kind = Kind.PAUSED,
          labelled: Sequence[int] = (), expect: str = "free") -> TurnClip:
    """Silence (``"-"``) and tone (``"t"``) stretches, whole VAD windows long; the
    quiet stretches at ``labelled`` (indices into ``parts``) are the labelled pauses."""
    pcm: list[Pcm] = []
    words: list[Span] = []
    pauses: list[Span] = []
    at = 0
    for index, (what, windows) in enumerate(parts):
        n = windows * W
        span = Span(start_ms=at * 1000 / RATE, end_ms=(at + n) * 1000 / RATE)
        if what == "t":
            pcm.append(tone(n * 1000 // RATE))
            words.append(Span(start_ms=span.start_ms, end_ms=span.end_ms, text=f"w{index}"))
        else:
            pcm.append(np.zeros(n, np.int16))
            if index in labelled:
                pauses.append(span)
        at += n
    spec = TurnSpec(id="tones", kind=kind, category="tones", voice="tone", segments=("x",),
                    pauses_ms=tuple(round(p.end_ms - p.start_ms) for p in pauses),
                    expect=expect)
    return TurnClip(spec=spec, source=Source.SYNTHETIC, words=tuple(words),
                    pauses=tuple(pauses), join="tones", pcm=np.concatenate(pcm))


# lead 512 ms, tone, a 320 ms word gap, tone, a labelled 1280 ms pause, tone, 3.2 s quiet
PAUSED = [("-", 16), ("t", 16), ("-", 10), ("t", 16), ("-", 40), ("t", 16), ("-", 100)]
COMPLETE = [("-", 16), ("t", 16), ("-", 100)]


def _heard_ms(window_end_samples: int) -> float:
    """When a window ending there is heard: the end of the 20 ms frame completing it."""
    frame = RATE * 20 // 1000
    return -(-window_end_samples // frame) * frame * 1000 / RATE


def _run(clip: TurnClip, spec: PolicySpec) -> TurnOutcome:
    return replay(clip, vad_track(clip, FakeSpeechDetector()), spec)


def test_the_silence_rule_cuts_into_the_pause_longer_than_its_threshold() -> None:
    clip = _clip(PAUSED, labelled=[4])
    out = _run(clip, silence_rule(500))
    # silence from the end of the second tone (58 windows); 500 ms = 15.6 windows -> 16
    assert out.decided_ms == _heard_ms((58 + 16) * W) == 2380.0
    assert out.cut_off and out.cut_pause_ms == 1280
    assert out.latency_ms is None and out.rule == "silence"


def test_a_short_rule_cuts_in_a_gap_between_words_not_in_a_labelled_pause() -> None:
    out = _run(_clip(PAUSED, labelled=[4]), silence_rule(300))  # 300 ms = 10 windows
    assert out.decided_ms == _heard_ms((32 + 10) * W)
    assert out.cut_off and out.cut_pause_ms is None


def test_a_long_rule_waits_out_the_pause_and_its_latency_runs_from_the_end_of_speech() -> None:
    clip = _clip(PAUSED, labelled=[4])
    out = _run(clip, silence_rule(1500))  # 47 windows of silence
    assert not out.cut_off
    assert clip.speech_end_ms == 114 * W * 1000 / RATE
    assert out.latency_ms == _heard_ms((114 + 47) * W) - clip.speech_end_ms


def test_complete_turn_latency() -> None:
    out = _run(_clip(COMPLETE, kind=Kind.COMPLETE), silence_rule(500))
    assert out.latency_ms == _heard_ms(48 * W) - 1024.0 == 516.0


class _FirstQuiet:
    """A plugged-in policy: ends at the first quiet window after speech, 25 ms to think."""

    def __init__(self, context: TurnContext) -> None:
        self.context = context
        self.spoke = False

    def hear(self, window: HeardWindow) -> TurnDecision | None:
        if window.probability >= 0.5:
            self.spoke = True
            return None
        return TurnDecision(rule="model", score=0.9, compute_ms=25.0) if self.spoke else None


class _Never:
    def __init__(self, _context: TurnContext) -> None:
        pass

    def hear(self, window: HeardWindow) -> TurnDecision | None:
        return None


PLUGIN = [PolicySpec(name="first-quiet", family="test", make=_FirstQuiet),
          PolicySpec(name="never", family="test", make=_Never)]


def test_a_plugged_in_policy_hears_the_windows_and_its_compute_time_counts() -> None:
    policies = load_policies(["tests.unit.test_bench_turns:PLUGIN"])
    assert [p.name for p in policies] == ["first-quiet", "never"]
    clip = _clip(COMPLETE, kind=Kind.COMPLETE)
    quick, never = (_run(clip, p) for p in policies)
    assert quick.decided_ms == _heard_ms(33 * W) + 25.0
    assert (quick.rule, quick.score) == ("model", 0.9)
    assert quick.latency_ms == pytest.approx(quick.decided_ms - 1024.0)
    assert never.decided_ms is None and not never.cut_off
    assert never.latency_ms is None


def test_summaries_count_cut_offs_per_pause_and_latency_quantiles() -> None:
    paused, complete = _clip(PAUSED, labelled=[4]), _clip(COMPLETE, kind=Kind.COMPLETE)
    complete = TurnClip(spec=TurnSpec(id="tones-c", kind=Kind.COMPLETE, category="tones",
                                      voice="tone", segments=("x",)),
                        source=complete.source, words=complete.words, pauses=(),
                        join="tones", pcm=complete.pcm)
    policies = [silence_rule(300), silence_rule(500), silence_rule(1500)]
    outcomes = run_policies([paused, complete], FakeSpeechDetector(), policies)
    by = {s.policy: s for s in summarize(outcomes, [paused, complete], policies)}
    assert (by["silence-300"].cut_offs, by["silence-300"].paused) == (1, 1)
    assert by["silence-300"].per_pause == {}  # cut in the word gap: the pause never reached
    assert by["silence-500"].per_pause == {1280: (1, 1)}
    assert by["silence-1500"].per_pause == {1280: (1, 0)}
    assert by["silence-1500"].cut_off_rate == 0.0
    assert by["silence-500"].latency_p50_ms == 516.0 == by["silence-500"].latency_p95_ms


# ---------------------------------------------------------------------- the data set


def test_the_plan_pairs_every_paused_turn_with_a_complete_one() -> None:
    specs = plan_turns(seed=SEED, voices=(ESPEAK, PIPER, ALLISON))
    ids = {s.id for s in specs}
    assert len(ids) == len(specs)
    paused = [s for s in specs if s.kind is Kind.PAUSED]
    assert paused and all(s.id[:-2] + "-c" in ids for s in paused)
    assert all(len(s.pauses_ms) == len(s.segments) - 1 >= 1 for s in paused)
    assert {ms for s in paused for ms in s.pauses_ms} == set(PAUSES_MS)
    assert all(s.digits_length == len(s.digits) for s in specs if s.expect == "digits")
    assert plan_turns(seed=SEED, voices=(ESPEAK,)) == plan_turns(seed=SEED, voices=(ESPEAK,))
    assert plan_turns(seed=1, voices=(ESPEAK,)) != plan_turns(seed=2, voices=(ESPEAK,))


@pytest.fixture(scope="module")
def turn_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[TurnClip, ...]:
    if not HAVE_SOUNDS:
        pytest.skip("Asterisk sounds are not installed")
    models_dir, manifest = _models()
    first, second = (load_turns(tmp_path_factory.mktemp(name), models_dir=models_dir,
                                manifest=manifest, voices=(ESPEAK, ALLISON))
                     for name in ("a", "b"))
    assert first.key == second.key
    manifests = [json.loads((s.folder / "manifest.json").read_text()) for s in (first, second)]
    assert manifests[0] == manifests[1]  # byte-identical clips (their SHA-256) and labels
    again = load_turns(first.folder.parent, models_dir=models_dir, manifest=manifest,
                       voices=(ESPEAK, ALLISON))
    assert [c.id for c in again.clips] == [c.id for c in first.clips]
    assert all(np.array_equal(a.pcm, b.pcm) for a, b in zip(again.clips, first.clips,
                                                             strict=True))
    return first.clips


def test_the_set_is_deterministic_and_has_both_kinds_in_each_voice(
        turn_set: tuple[TurnClip, ...]) -> None:
    kinds = {(c.spec.voice, c.spec.kind, c.source) for c in turn_set}
    assert kinds == {(ESPEAK, Kind.PAUSED, Source.SYNTHETIC),
                     (ESPEAK, Kind.COMPLETE, Source.SYNTHETIC),
                     (ALLISON, Kind.PAUSED, Source.REAL), (ALLISON, Kind.COMPLETE, Source.REAL)}
    assert {c.join for c in turn_set if c.spec.voice == ESPEAK and c.spec.kind is Kind.PAUSED} \
        == {"comma"}  # espeak-ng's commas are always found


def test_labels_hold(turn_set: tuple[TurnClip, ...]) -> None:
    for clip in turn_set:
        loud = np.abs(clip.pcm.astype(np.int32)) > LOUD
        first, last = np.flatnonzero(loud)[[0, -1]]
        assert clip.speech_start_ms == pytest.approx(first * 1000 / RATE), clip.id
        assert clip.speech_end_ms == pytest.approx((last + 1) * 1000 / RATE), clip.id
        assert clip.duration_ms - clip.speech_end_ms >= TRAILING_SILENCE_MS - 1, clip.id
        assert all(a.end_ms <= b.start_ms for a, b in zip(clip.words, clip.words[1:],
                                                          strict=False)), clip.id
        assert len(clip.pauses) == len(clip.spec.pauses_ms), clip.id
        for pause, planned in zip(clip.pauses, clip.spec.pauses_ms, strict=True):
            assert clip.speech_start_ms < pause.start_ms < pause.end_ms < clip.speech_end_ms
            assert pause.end_ms - pause.start_ms == pytest.approx(planned, abs=0.1), clip.id
            inside = loud[round(pause.start_ms * RATE / 1000):round(pause.end_ms * RATE / 1000)]
            assert not inside.any(), clip.id
        if clip.spec.expect == "digits":
            words = clip.transcript_at(clip.duration_ms).split()
            assert len(words) == clip.spec.digits_length or clip.spec.category == "card-intro"


@pytest.fixture(scope="module")
def silero() -> SpeechDetector:
    models_dir, manifest = _models()
    if not (models_dir / "silero-vad" / "silero_vad.onnx").is_file():
        pytest.skip("silero-vad is not pulled (voicebot models pull silero-vad)")
    from voicebot.engines.registry import EngineOptions, build_engine

    detector: SpeechDetector = build_engine("vad", "silero", EngineOptions(
        models_dir=models_dir, manifest=manifest, options={"model": "silero-vad"}))
    return detector


def test_every_pause_is_a_gap_the_real_vad_hears(turn_set: tuple[TurnClip, ...],
                                                 silero: SpeechDetector) -> None:
    """Silero's windows stay under the endpointer's neg_threshold (0.35) for the pause
    but its last 200 ms at most: two 32 ms windows of alignment plus its hangover."""
    for clip in (c for c in turn_set if c.spec.kind is Kind.PAUSED):
        track = vad_track(clip, silero)
        starts = np.arange(len(track.probabilities)) * W * 1000 / RATE
        for pause, planned in zip(clip.pauses, clip.spec.pauses_ms, strict=True):
            inside = (starts >= pause.start_ms) & (starts + W * 1000 / RATE <= pause.end_ms)
            quiet = np.concatenate([[0], (inside & (track.probabilities < 0.35)), [0]])
            edges = np.flatnonzero(np.diff(quiet.astype(int)))
            longest = max(b - a for a, b in zip(edges[::2], edges[1::2], strict=True))
            assert longest * W * 1000 / RATE >= planned - 200, (clip.id, planned)


def test_piper_speaks_the_same_audio_in_every_process() -> None:
    models_dir, manifest = _models()
    if not (models_dir / PIPER_VOICE / f"{PIPER_VOICE}.onnx").is_file():
        pytest.skip(f"{PIPER_VOICE} is not pulled (make models)")
    texts = ["four two, one seven", "four two one seven"]
    first = synthesize(PIPER, texts, models_dir=models_dir, manifest=manifest)
    second = synthesize(PIPER, list(reversed(texts)), models_dir=models_dir, manifest=manifest)
    assert all(np.array_equal(first[t], second[t]) and len(first[t]) > RATE // 2 for t in texts)


@needs_sounds
def test_real_vad_on_a_recorded_digit_string(silero: SpeechDetector) -> None:
    """Allison reads four digits as 2+2 with 1200 ms between the groups (PAUSED) and
    without (COMPLETE): the 500 ms rule cuts into the pause, a 1500 ms rule waits it
    out; on the complete string the 500 ms rule answers ~0.5-0.7 s after her last
    digit, and today's session, expecting 4 digits, ends at its 200 ms speculation."""
    specs = {s.id: s for s in plan_turns(seed=SEED, voices=(ALLISON,))}
    paused = assemble(specs[f"{ALLISON}-digits-2+2-04-p"], seed=SEED, speech={})
    complete = assemble(specs[f"{ALLISON}-digits-2+2-04-c"], seed=SEED, speech={})
    assert paused.spec.pauses_ms == (1200,) and paused.spec.expect == "digits"
    tracks = {c.id: vad_track(c, silero) for c in (paused, complete)}

    def run(clip: TurnClip, spec: PolicySpec) -> TurnOutcome:
        return replay(clip, tracks[clip.id], spec)

    cut = run(paused, silence_rule(500))
    assert cut.cut_off and cut.cut_pause_ms == 1200
    waited = run(paused, silence_rule(1500))
    assert waited.latency_ms is not None and not waited.cut_off
    assert 1500 <= waited.latency_ms < 1800
    answered = run(complete, silence_rule(500))
    assert answered.latency_ms is not None and not answered.cut_off
    assert 500 <= answered.latency_ms < 700
    today = run(complete, session_today())
    assert today.latency_ms is not None and today.rule == "expectation"
    assert 200 <= today.latency_ms < 400
    assert run(paused, session_today()).rule == "silence"

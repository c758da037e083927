"""The end-of-turn engine without the released model: Smart Turn's input features (pure),
the verdict, the scripted fake, the registry, and the ONNX adapter on tiny real graphs.

The released model on real human speech: tests/integration/test_smart_turn_real.py;
the Protocol's contract on the fake and the real model: tests/contract/test_turn_detector.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from voicebot.engines.fakes import FakeTurnDetector
from voicebot.engines.registry import ENGINE_NAMES, EngineOptions, build_engine
from voicebot.engines.smart_turn import SmartTurnDetector
from voicebot.errors import ConfigError, EngineError, EngineUnavailableError
from voicebot.turn.detector import TurnDetector, TurnVerdict
from voicebot.turn.features import (
    FRAMES,
    MEL_BINS,
    WINDOW_SAMPLES,
    last_window,
    log_mel_features,
    mel_filters,
    turn_features,
)
from voicebot.types import Pcm

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]
RATE_HZ = 16_000


def _noise(seconds: float, *, seed: int = 0, amplitude: float = 3000.0) -> Pcm:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE_HZ)) * amplitude).astype(np.int16)


# ------------------------------------------------------------------ features (pure)


def test_short_turn_is_padded_with_zeros_before_it() -> None:
    pcm = _noise(2.0)
    window = last_window(pcm)
    assert window.dtype == np.float32 and window.shape == (WINDOW_SAMPLES,)
    assert not window[: WINDOW_SAMPLES - len(pcm)].any()
    np.testing.assert_array_equal(window[-len(pcm):], pcm.astype(np.float32) / 32768.0)


def test_long_turn_keeps_its_last_eight_seconds() -> None:
    pcm = _noise(11.5)
    window = last_window(pcm)
    np.testing.assert_array_equal(window, pcm[-WINDOW_SAMPLES:].astype(np.float32) / 32768.0)
    # so what came before the last 8 s cannot change the features
    other_start = np.concatenate([_noise(3.5, seed=9), pcm[-WINDOW_SAMPLES:]])
    np.testing.assert_array_equal(turn_features(other_start), turn_features(pcm))


def test_exactly_eight_seconds_and_empty_turns() -> None:
    pcm = _noise(8.0)
    np.testing.assert_array_equal(last_window(pcm), pcm.astype(np.float32) / 32768.0)
    assert not last_window(np.zeros(0, dtype=np.int16)).any()


@pytest.mark.parametrize("bad", [np.zeros(100, dtype=np.float32), np.zeros((2, 100), np.int16)])
def test_features_take_one_dimensional_int16(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="1-D int16"):
        last_window(bad)


def test_feature_shape_and_range() -> None:
    features = turn_features(_noise(3.0))
    assert features.dtype == np.float32 and features.shape == (1, MEL_BINS, FRAMES)
    assert (MEL_BINS, FRAMES) == (80, 800)
    # log10 clamped to 8 decades under the maximum, then (x + 4) / 4: a 2.0-wide range
    assert features.max() - features.min() <= 2.0 + 1e-6
    assert np.isfinite(features).all()


def test_silence_gives_constant_features() -> None:
    features = turn_features(np.zeros(RATE_HZ, dtype=np.int16))
    assert np.ptp(features) == 0.0  # no energy anywhere: every bin at the floor


def test_features_equal_faster_whispers_extractor() -> None:
    """An independent implementation of the same Whisper features (float32 STFT)."""
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    extractor = fw.FeatureExtractor(feature_size=80, chunk_length=8)
    for pcm in (_noise(2.5, seed=1), _noise(9.0, seed=2, amplitude=12000.0)):
        window = last_window(pcm)
        normalised = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
        theirs = extractor(normalised, padding=0)
        assert theirs.shape == (MEL_BINS, FRAMES)
        np.testing.assert_allclose(log_mel_features(window), theirs, atol=1e-4)
    np.testing.assert_allclose(mel_filters(), extractor.mel_filters, rtol=1e-5, atol=1e-8)


def test_features_of_a_tone_peak_in_its_mel_bin() -> None:
    t = np.arange(RATE_HZ) / RATE_HZ
    low = (8000 * np.sin(2 * np.pi * 300.0 * t)).astype(np.int16)
    high = (8000 * np.sin(2 * np.pi * 3000.0 * t)).astype(np.int16)
    peak_low = int(turn_features(low)[0, :, -50].argmax())
    peak_high = int(turn_features(high)[0, :, -50].argmax())
    assert peak_low < peak_high
    assert mel_filters()[peak_low, 300 * 400 // RATE_HZ] > 0  # 300 Hz falls in that filter


def test_log_mel_features_need_a_whole_window() -> None:
    with pytest.raises(ValueError, match="128000"):
        log_mel_features(np.zeros(1000, dtype=np.float32))


# ------------------------------------------------------------------ verdict and fake


def test_verdict_is_frozen_and_checked() -> None:
    verdict = TurnVerdict(complete_prob=0.7, complete=True, heard_ms=1200)
    with pytest.raises(AttributeError):
        verdict.complete_prob = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError):
        TurnVerdict(complete_prob=1.5, complete=True, heard_ms=0)
    with pytest.raises(ValueError):
        TurnVerdict(complete_prob=0.5, complete=False, heard_ms=-1)
    with pytest.raises(TypeError):
        TurnVerdict(0.5, False, 0)  # type: ignore[call-arg]  # keyword-only


def test_fake_follows_its_script_then_the_default() -> None:
    fake = FakeTurnDetector(probs=[0.2, 0.9], default_prob=0.3)
    detector: TurnDetector = fake
    verdicts = [detector.predict(_noise(s)) for s in (1.0, 2.0, 9.0)]
    assert [v.complete_prob for v in verdicts] == [0.2, 0.9, 0.3]
    assert [v.complete for v in verdicts] == [False, True, False]
    assert [v.heard_ms for v in verdicts] == [1000, 2000, 8000]
    assert fake.heard == [RATE_HZ, 2 * RATE_HZ, WINDOW_SAMPLES]
    fake.script(0.51)
    assert detector.predict(_noise(0.5)).complete
    with pytest.raises(ValueError):
        detector.predict(np.zeros(10, dtype=np.float32))


def test_fake_by_default_says_every_pause_ends_the_turn() -> None:
    verdict = FakeTurnDetector().predict(np.zeros(0, dtype=np.int16))
    assert verdict == TurnVerdict(complete_prob=1.0, complete=True, heard_ms=0)


# ------------------------------------------------------------------ registry


def test_registry_knows_the_turn_engines() -> None:
    assert ENGINE_NAMES["turn"] == ("smart-turn", "fake")
    fake = build_engine("turn", "fake", EngineOptions(options={"probs": [0.1]}))
    assert isinstance(fake, FakeTurnDetector) and not fake.predict(_noise(1.0)).complete
    with pytest.raises(ConfigError):
        build_engine("turn", "fake", EngineOptions(options={"nonsense": 1}))


def test_registry_says_when_the_model_is_not_pulled(tmp_path: Path) -> None:
    options = EngineOptions(models_dir=tmp_path, manifest=REPO / "models" / "manifest.yaml")
    with pytest.raises(EngineUnavailableError, match=r"voicebot models pull smart-turn-v3\.2"):
        build_engine("turn", "smart-turn", options)


# ------------------------------------------------------------------ adapter, tiny graphs


def _graph(path: Path, *, input_name: str = "input_features", mels: int = 80,
           op: str = "Sigmoid") -> Path:
    """A real ONNX graph with Smart Turn's interface: the mean over mels and frames, then
    ``op`` (``Sigmoid``: a probability; ``Identity``: the mean itself, unbounded)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [input_name, "axes"], ["mean"], keepdims=0),
         helper.make_node("Unsqueeze", ["mean", "one"], ["column"]),
         helper.make_node(op, ["column"], ["logits"])],
        "tiny-turn",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", mels, 800])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
         helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_adapter_runs_a_graph_with_smart_turns_interface(tmp_path: Path) -> None:
    _graph(tmp_path / "tiny.onnx")
    detector: TurnDetector = SmartTurnDetector(model_path=tmp_path, threshold=0.4)
    assert (detector.sample_rate_hz, detector.window_ms, detector.threshold) == (16_000, 8000, 0.4)
    pcm = _noise(2.0)
    verdict = detector.predict(pcm)
    expected = 1.0 / (1.0 + np.exp(-float(turn_features(pcm).mean())))
    assert verdict.complete_prob == pytest.approx(expected, rel=1e-5)
    assert verdict.complete == (expected > 0.4) and verdict.heard_ms == 2000
    assert detector.predict(_noise(10.0)).heard_ms == 8000


def test_adapter_rejects_graphs_that_are_not_smart_turn(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="not a Smart Turn"):
        SmartTurnDetector(model_path=_graph(tmp_path / "a.onnx", input_name="audio"))
    with pytest.raises(EngineUnavailableError, match="not a Smart Turn"):
        SmartTurnDetector(model_path=_graph(tmp_path / "b.onnx", mels=128))
    with pytest.raises(EngineUnavailableError, match="not found"):
        SmartTurnDetector(model_path=tmp_path / "missing.onnx")
    with pytest.raises(EngineUnavailableError, match="found 2"):
        SmartTurnDetector(model_path=tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.onnx").write_bytes(b"not a graph")
    with pytest.raises(EngineError, match="cannot load"):
        SmartTurnDetector(model_path=tmp_path / "junk")
    with pytest.raises(ConfigError):
        SmartTurnDetector(model_path=tmp_path / "a.onnx", threshold=1.0)
    with pytest.raises(ConfigError):
        SmartTurnDetector(model_path=tmp_path / "a.onnx", threads=0)


def test_adapter_translates_bad_model_output(tmp_path: Path) -> None:
    detector = SmartTurnDetector(model_path=_graph(tmp_path / "raw.onnx", op="Identity"))
    silence = np.zeros(RATE_HZ, dtype=np.int16)
    assert float(turn_features(silence).mean()) == pytest.approx(-1.5)  # the log floor
    assert detector.predict(silence).complete_prob == 0.0  # unbounded output: clamped
    nan_features = np.full((1, MEL_BINS, FRAMES), np.nan, dtype=np.float32)
    with pytest.raises(EngineError, match="non-finite"):
        detector.complete_probability(nan_features)
    with pytest.raises(EngineError, match="inference failed"):
        detector.complete_probability(np.zeros((1, MEL_BINS, 10), dtype=np.float32))

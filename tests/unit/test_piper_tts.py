"""Tests of the Piper synthesizer on the synthetic (random-weight) voices.

The voices speak noise but cost what real voices cost; their ``length_scale``
is calibrated to a natural speech rate, so durations are checkable.  They live
in ``$VOICEBOT_SYNTHETIC_VOICES`` (default ``/work/shared/models/synthetic``);
the module is skipped without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from voicebot.engines.base import Synthesizer
from voicebot.engines.espeak_tts import EspeakSynthesizer
from voicebot.engines.piper_tts import PiperSynthesizer
from voicebot.errors import ConfigError, EngineError, EngineUnavailableError

__all__: list[str] = []

VOICES = Path(os.environ.get("VOICEBOT_SYNTHETIC_VOICES", "/work/shared/models/synthetic"))
X_LOW = VOICES / "en_US-synthetic-x_low.onnx"
MEDIUM = VOICES / "en_US-synthetic-medium.onnx"
BALANCE = (
    "Your current balance is one thousand two hundred fifty dollars and forty cents. "
    "Is there anything else I can help you with today?"
)

pytestmark = pytest.mark.skipif(not X_LOW.is_file(), reason=f"no synthetic voice in {VOICES}")


def _expected_s(text: str) -> float:
    """Duration at 165 words per minute, the rate the synthetic voices are calibrated to."""
    return len(text.split()) / 165 * 60


@pytest.fixture(scope="module")
def x_low() -> PiperSynthesizer:
    return PiperSynthesizer(voice_path=X_LOW)


@pytest.fixture(scope="module")
def quiet() -> PiperSynthesizer:
    """x_low without noise: deterministic audio."""
    return PiperSynthesizer(voice_path=X_LOW, noise_scale=0.0, noise_w=0.0)


def test_implements_protocol(x_low: PiperSynthesizer) -> None:
    synth: Synthesizer = x_low
    assert synth.sample_rate_hz == 16_000
    assert x_low.synthetic
    assert x_low.threads == 1


def test_audio_is_int16_with_plausible_length(x_low: PiperSynthesizer) -> None:
    pcm = x_low.synthesize(BALANCE)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    duration_s = len(pcm) / x_low.sample_rate_hz
    assert 0.6 * _expected_s(BALANCE) < duration_s < 1.6 * _expected_s(BALANCE)
    assert np.any(pcm != 0)


def test_empty_text_gives_empty_audio(x_low: PiperSynthesizer) -> None:
    assert len(x_low.synthesize("")) == 0
    assert len(x_low.synthesize("  \n")) == 0


def test_sentences_are_synthesized_and_concatenated(quiet: PiperSynthesizer) -> None:
    both = quiet.synthesize("Hello there. How are you?")
    first, second = quiet.synthesize("Hello there."), quiet.synthesize("How are you?")
    assert len(quiet.phoneme_ids("Hello there. How are you?")) == 2
    np.testing.assert_array_equal(both, np.concatenate([first, second]))


def test_length_scale_changes_length(quiet: PiperSynthesizer) -> None:
    slow = PiperSynthesizer(voice_path=X_LOW, noise_scale=0.0, noise_w=0.0, length_scale=2.0)
    text = "Please hold while I transfer you to an agent."
    assert len(slow.synthesize(text)) > 1.5 * len(quiet.synthesize(text))


def test_voice_id_stable_and_specific(x_low: PiperSynthesizer, quiet: PiperSynthesizer) -> None:
    again = PiperSynthesizer(voice_path=X_LOW, threads=2)
    assert again.voice_id == x_low.voice_id  # threads do not change the audio
    assert x_low.voice_id.startswith("piper:en_US-synthetic-x_low.onnx+synthetic:")
    assert quiet.voice_id != x_low.voice_id  # settings are part of the id
    # threads honoured
    assert again.threads == 2
    options = again._session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1


def test_unmarked_voice_is_not_synthetic(tmp_path: Path) -> None:
    raw = json.loads(Path(f"{X_LOW}.json").read_text(encoding="utf-8"))
    del raw["synthetic"]
    config = tmp_path / "voice.onnx.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    synth = PiperSynthesizer(voice_path=X_LOW, config_path=config)
    assert not synth.synthetic
    assert "+synthetic" not in synth.voice_id


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="not found"):
        PiperSynthesizer(voice_path=tmp_path / "missing.onnx")
    with pytest.raises(EngineUnavailableError, match="config not found"):
        PiperSynthesizer(voice_path=X_LOW, config_path=tmp_path / "missing.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json", encoding="utf-8")
    with pytest.raises(EngineError, match="invalid Piper voice config"):
        PiperSynthesizer(voice_path=X_LOW, config_path=bad_json)
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"audio": {"sample_rate": 16000}}), encoding="utf-8")
    with pytest.raises(EngineError, match="invalid Piper voice config"):
        PiperSynthesizer(voice_path=X_LOW, config_path=incomplete)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        PiperSynthesizer(voice_path=garbage, config_path=Path(f"{X_LOW}.json"))
    with pytest.raises(ConfigError):
        PiperSynthesizer(voice_path=X_LOW, threads=0)
    with pytest.raises(ConfigError):
        PiperSynthesizer(voice_path=X_LOW, speaker_id=3)


def test_concurrent_calls_match_sequential(quiet: PiperSynthesizer) -> None:
    texts = ["Your card is now blocked.", "Thank you for calling Example Bank. Goodbye!"]
    expected = [quiet.synthesize(t) for t in texts]
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def work(i: int) -> None:
        results[i].extend(quiet.synthesize(texts[i]) for _ in range(3))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        for pcm in results[i]:
            np.testing.assert_array_equal(pcm, expected[i])


def test_alternates_with_espeak_in_process(quiet: PiperSynthesizer) -> None:
    espeak = EspeakSynthesizer()
    ids = quiet.phoneme_ids("Hello there.")
    piper_audio = quiet.synthesize("Hello there.")
    for _ in range(2):
        speech = espeak.synthesize("Hello, how can I help you today?")
        assert 1.0 < len(speech) / espeak.sample_rate_hz < 4.0
        assert quiet.phoneme_ids("Hello there.") == ids
        np.testing.assert_array_equal(quiet.synthesize("Hello there."), piper_audio)


_COEXIST = """
import json, sys
from pathlib import Path
first = sys.argv[1]
def piper():
    from voicebot.engines.piper_tts import PiperSynthesizer
    return PiperSynthesizer(voice_path=Path(sys.argv[2]))
def espeak():
    from voicebot.engines.espeak_tts import EspeakSynthesizer
    return EspeakSynthesizer()
p, e = (piper(), espeak()) if first == "piper" else (espeak(), piper())[::-1]
out = []
for _ in range(2):
    out.append(p.phoneme_ids("Hello there. How are you?"))
    out.append(len(e.synthesize("Hello, how can I help you today?")) / e.sample_rate_hz)
print(json.dumps(out))
"""


def test_coexists_with_espeak_in_either_import_order() -> None:
    runs = {}
    for first in ("piper", "espeak"):
        proc = subprocess.run(
            [sys.executable, "-c", _COEXIST, first, str(X_LOW)],
            capture_output=True, text=True, timeout=120, check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.returncode == 0, proc.stderr
        runs[first] = json.loads(proc.stdout.strip().splitlines()[-1])
    for ids_a, secs_a, ids_b, secs_b in runs.values():
        assert ids_a == ids_b == runs["piper"][0]
        assert 1.0 < secs_a < 4.0
        assert 1.0 < secs_b < 4.0


@pytest.mark.skipif(not MEDIUM.is_file(), reason="no synthetic medium voice")
def test_medium_voice_smoke(x_low: PiperSynthesizer) -> None:
    medium = PiperSynthesizer(voice_path=MEDIUM)
    assert medium.sample_rate_hz == 22_050
    assert medium.synthetic
    assert medium.voice_id != x_low.voice_id
    text = "Please hold while I transfer you to an agent."
    duration_s = len(medium.synthesize(text)) / medium.sample_rate_hz
    assert 0.5 * _expected_s(text) < duration_s < 2.0 * _expected_s(text)

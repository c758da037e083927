"""Tests of the Piper synthesizer on a real voice, ``en_US-joe-medium``.

The voice comes from the project's model store: :func:`ensure` returns its
folder in ``models/cache`` and pulls it there first (about 63 MB) when a fresh
clone lacks it, so nothing outside the repository is read.  Durations are
checked against broad bounds of natural speech, not exact lengths; exact
comparisons use the voice with its noise off, whose output is deterministic.
"""

from __future__ import annotations

import json
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
from voicebot.modelhub.store import ensure

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]
VOICE = "en_US-joe-medium"
BALANCE = (
    "Your current balance is one thousand two hundred fifty dollars and forty cents. "
    "Is there anything else I can help you with today?"
)


@pytest.fixture(scope="module")
def voice_path() -> Path:
    """The real voice's model file, installed by the model store if need be."""
    folder = ensure(REPO / "models" / "manifest.yaml", VOICE, REPO / "models" / "cache")
    return folder / f"{VOICE}.onnx"


@pytest.fixture(scope="module")
def config_path(voice_path: Path) -> Path:
    return Path(f"{voice_path}.json")


@pytest.fixture(scope="module")
def joe(voice_path: Path) -> PiperSynthesizer:
    """The voice with its config's defaults (noise on)."""
    return PiperSynthesizer(voice_path=voice_path)


@pytest.fixture(scope="module")
def quiet(voice_path: Path) -> PiperSynthesizer:
    """The voice without noise: deterministic audio."""
    return PiperSynthesizer(voice_path=voice_path, noise_scale=0.0, noise_w=0.0)


def test_implements_protocol(joe: PiperSynthesizer, config_path: Path) -> None:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    synth: Synthesizer = joe
    assert synth.sample_rate_hz == config["audio"]["sample_rate"]
    assert not joe.synthetic
    assert joe.threads == 1


def test_audio_is_int16_plausible_speech(joe: PiperSynthesizer) -> None:
    pcm = joe.synthesize(BALANCE)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    duration_s = len(pcm) / joe.sample_rate_hz
    assert 2.5 < duration_s < 12.0  # 22 words: a broad range of natural speech rates
    assert int(np.max(np.abs(pcm.astype(np.int32)))) > 1000  # audible, not silence


def test_empty_text_gives_empty_audio(joe: PiperSynthesizer) -> None:
    assert len(joe.synthesize("")) == 0
    assert len(joe.synthesize("  \n")) == 0


def test_noise_off_is_deterministic(quiet: PiperSynthesizer) -> None:
    text = "Your card is now blocked."
    first = quiet.synthesize(text)
    assert len(first) > 0
    np.testing.assert_array_equal(quiet.synthesize(text), first)


def test_sentences_are_synthesized_and_concatenated(quiet: PiperSynthesizer) -> None:
    both = quiet.synthesize("Hello there. How are you?")
    first, second = quiet.synthesize("Hello there."), quiet.synthesize("How are you?")
    assert len(quiet.phoneme_ids("Hello there. How are you?")) == 2
    np.testing.assert_array_equal(both, np.concatenate([first, second]))


def test_length_scale_slows_speech(quiet: PiperSynthesizer, voice_path: Path) -> None:
    slow = PiperSynthesizer(
        voice_path=voice_path, noise_scale=0.0, noise_w=0.0, length_scale=2.0
    )
    text = "Please hold while I transfer you to an agent."
    assert len(slow.synthesize(text)) > 1.5 * len(quiet.synthesize(text))


def test_voice_id_stable_and_specific(
    joe: PiperSynthesizer, quiet: PiperSynthesizer, voice_path: Path
) -> None:
    again = PiperSynthesizer(voice_path=voice_path, threads=2)
    assert again.voice_id == joe.voice_id  # threads do not change the audio
    assert joe.voice_id.startswith(f"piper:{VOICE}.onnx:")  # no "+synthetic" flag
    assert quiet.voice_id != joe.voice_id  # settings are part of the id
    # threads honoured
    assert again.threads == 2
    options = again._session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1


def test_synthetic_flag_follows_config_marker(
    tmp_path: Path, voice_path: Path, config_path: Path
) -> None:
    raw = json.loads(config_path.read_text(encoding="utf-8"))
    assert "synthetic" not in raw
    raw["synthetic"] = True
    config = tmp_path / "voice.onnx.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    synth = PiperSynthesizer(voice_path=voice_path, config_path=config)
    assert synth.synthetic
    assert synth.voice_id.startswith(f"piper:{VOICE}.onnx+synthetic:")


def test_errors(tmp_path: Path, voice_path: Path, config_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="not found"):
        PiperSynthesizer(voice_path=tmp_path / "missing.onnx")
    with pytest.raises(EngineUnavailableError, match="config not found"):
        PiperSynthesizer(voice_path=voice_path, config_path=tmp_path / "missing.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json", encoding="utf-8")
    with pytest.raises(EngineError, match="invalid Piper voice config"):
        PiperSynthesizer(voice_path=voice_path, config_path=bad_json)
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"audio": {"sample_rate": 22050}}), encoding="utf-8")
    with pytest.raises(EngineError, match="invalid Piper voice config"):
        PiperSynthesizer(voice_path=voice_path, config_path=incomplete)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        PiperSynthesizer(voice_path=garbage, config_path=config_path)
    with pytest.raises(ConfigError):
        PiperSynthesizer(voice_path=voice_path, threads=0)
    with pytest.raises(ConfigError, match="one speaker"):
        PiperSynthesizer(voice_path=voice_path, speaker_id=3)


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
        assert len(results[i]) == 3
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


def test_coexists_with_espeak_in_either_import_order(voice_path: Path) -> None:
    runs = {}
    for first in ("piper", "espeak"):
        proc = subprocess.run(
            [sys.executable, "-c", _COEXIST, first, str(voice_path)],
            capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr
        runs[first] = json.loads(proc.stdout.strip().splitlines()[-1])
    for ids_a, secs_a, ids_b, secs_b in runs.values():
        assert ids_a == ids_b == runs["piper"][0]
        assert 1.0 < secs_a < 4.0
        assert 1.0 < secs_b < 4.0

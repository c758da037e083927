"""``python -m bench caller-audio``: the load tests' caller speech, from a scenario's phrasebook.

Every phrase a caller may say in the scenario (``Scenario.phrases()``: the
intent examples plus the answers to its slot questions) is spoken by espeak-ng
and written twice into ``loadtests/audio/``: 16 kHz PCM16 WAV (wideband, the
native protocol) and headerless 8 kHz G.711 μ-law (``.ulaw``: Twilio and the
other telephone providers).  ``manifest.json`` lists each phrase with its text,
the intent or slot value it means, where speech starts and ends, and the
files' SHA-256.

espeak-ng's output depends on what it said before in the same process, so the
phrases are always spoken in the same order in a fresh process;
``--check`` regenerates into a temporary folder and compares with what is
committed (a changed phrasebook or espeak-ng version shows up there).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from server.client import save_wav
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.audio.resample import resample
from voicebot.dialog.loader import load_scenario
from voicebot.engines.base import Pcm
from voicebot.nlu.entities import extract_entities

__all__ = ["MANIFEST", "build_caller_audio", "check_caller_audio"]

MANIFEST = "manifest.json"
_WPM = 165
_LOUD = 300  # |sample| above this counts as speech when finding onset and end


def _speech_bounds_ms(pcm: Pcm, rate_hz: int) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _LOUD)
    if not len(loud):
        return 0, 0
    return int(loud[0]) * 1000 // rate_hz, (int(loud[-1]) + 1) * 1000 // rate_hz


def _meaning(scenario_intents: dict[str, tuple[str, ...]], text: str) -> dict[str, Any]:
    for intent, examples in scenario_intents.items():
        if text in examples:
            return {"intent": intent}
    entities = extract_entities(text)
    if "yes_no" in entities:
        return {"slot_type": "yes_no", "value": entities["yes_no"]}
    if "digits" in entities:
        return {"slot_type": "digits", "value": entities["digits"]}
    return {}


def _slug(text: str) -> str:
    kept = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in kept.split("-") if part)[:40]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_caller_audio(scenario_path: Path, out_dir: Path) -> dict[str, Any]:
    """Speak every phrase of the scenario into ``out_dir``; returns the manifest."""
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    scenario = load_scenario(scenario_path)
    synth = EspeakSynthesizer(rate_wpm=_WPM)
    out_dir.mkdir(parents=True, exist_ok=True)
    intents = {name: tuple(examples) for name, examples in scenario.intents.items()}
    phrases: list[dict[str, Any]] = []
    for number, text in enumerate(dict.fromkeys(scenario.phrases()), start=1):
        raw = synth.synthesize(text)
        wide = resample(raw, in_rate_hz=synth.sample_rate_hz, out_rate_hz=16000)
        narrow = resample(raw, in_rate_hz=synth.sample_rate_hz, out_rate_hz=8000)
        stem = f"{number:02d}-{_slug(text)}"
        wav, ulaw = out_dir / f"{stem}.wav", out_dir / f"{stem}.ulaw"
        save_wav(wav, wide, 16000)
        ulaw.write_bytes(encode(narrow, AudioEncoding.MULAW))
        start_ms, end_ms = _speech_bounds_ms(wide, 16000)
        phrases.append({
            "id": stem, "text": text, **_meaning(intents, text),
            "speech_start_ms": start_ms, "speech_end_ms": end_ms,
            "files": {"pcm16-16000": wav.name, "mulaw-8000": ulaw.name},
            "sha256": {wav.name: _sha256(wav), ulaw.name: _sha256(ulaw)},
        })
    manifest = {
        "scenario": scenario.name,
        "voice": f"espeak-ng {scenario.language} {_WPM} wpm (synthetic caller speech)",
        "generated_by": "python -m bench caller-audio (bench/caller_audio.py)",
        "phrases": phrases,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_caller_audio(scenario_path: Path, committed: Path) -> list[str]:
    """Regenerate into a temporary folder; the differences from ``committed`` (none: [])."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build_caller_audio(scenario_path, Path(tmp))
    try:
        old = json.loads((committed / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return [f"{committed / MANIFEST}: {exc}"]
    problems: list[str] = []
    old_by_id = {p["id"]: p for p in old.get("phrases", [])}
    new_by_id = {p["id"]: p for p in fresh["phrases"]}
    problems += [f"missing from {committed}: {i}" for i in new_by_id.keys() - old_by_id.keys()]
    problems += [f"not in the phrasebook any more: {i}"
                 for i in old_by_id.keys() - new_by_id.keys()]
    for phrase_id in sorted(new_by_id.keys() & old_by_id.keys()):
        if new_by_id[phrase_id] != old_by_id[phrase_id]:
            problems.append(f"{phrase_id}: manifest entry differs")
        for name, digest in new_by_id[phrase_id]["sha256"].items():
            path = committed / name
            if not path.exists() or _sha256(path) != digest:
                problems.append(f"{path}: audio differs from a fresh build")
    if {k: v for k, v in old.items() if k != "phrases"} != \
            {k: v for k, v in fresh.items() if k != "phrases"}:
        problems.append(f"{committed / MANIFEST}: header differs")
    return problems

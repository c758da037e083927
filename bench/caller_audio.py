"""``python -m bench caller-audio``: the load tests' caller speech for a scenario.

Every phrase a caller of the scenario may say (:func:`loadtests.slot_values.phrase_plan`:
its intent examples, the typical answers of its slot types, and answers generated
for its slots' lengths, ranges and tested values) is spoken by espeak-ng and
written twice: 16 kHz PCM16 WAV (wideband, the native protocol) and headerless 8 kHz
G.711 μ-law (``.ulaw``: Twilio and the other telephone providers).
``manifest.json`` lists each phrase with its text, the intent or slot value it
means, where speech starts and ends, and the files' SHA-256.  The demo scenario's
audio is committed in ``loadtests/audio``; another scenario's belongs in
``out/caller-audio/<name>`` (``loadtests.phrases.audio_dir``), and a folder that
holds one scenario's audio is never overwritten with another's.

A build is cached by content: when the folder's manifest already lists the same
phrases with the same meanings and voice, and every file still has its SHA-256,
nothing is spoken again.  espeak-ng's output depends on what it said before in the
same process, so the phrases are always spoken in the same order in a fresh
process; ``--check`` regenerates into a temporary folder and compares with what is
committed (a changed phrasebook or espeak-ng version shows up there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.phrases import audio_dir
from loadtests.slot_values import PlannedPhrase, phrase_plan
from server.client import save_wav
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.audio.resample import resample
from voicebot.dialog.loader import load_scenario
from voicebot.engines.base import Pcm
from voicebot.errors import VoicebotError

__all__ = ["MANIFEST", "build_caller_audio", "check_caller_audio", "default_out", "is_current"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_WPM = 165
_LOUD = 300  # |sample| above this counts as speech when finding onset and end


def _speech_bounds_ms(pcm: Pcm, rate_hz: int) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _LOUD)
    if not len(loud):
        return 0, 0
    return int(loud[0]) * 1000 // rate_hz, (int(loud[-1]) + 1) * 1000 // rate_hz


def _slug(text: str) -> str:
    kept = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in kept.split("-") if part)[:40]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _header(scenario_name: str, language: str) -> dict[str, str]:
    return {
        "scenario": scenario_name,
        "voice": f"espeak-ng {language} {_WPM} wpm (synthetic caller speech)",
        "generated_by": "python -m bench caller-audio (bench/caller_audio.py)",
    }


def _stem(number: int, text: str) -> str:
    return f"{number:02d}-{_slug(text)}"


def is_current(out_dir: Path, header: dict[str, str], plan: list[PlannedPhrase]) -> bool:
    """Whether ``out_dir`` already holds this audio: the same header, the same phrases
    with the same meanings, and every file still with its SHA-256."""
    try:
        old = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    phrases = old.get("phrases")
    if {k: v for k, v in old.items() if k != "phrases"} != header \
            or not isinstance(phrases, list) or len(phrases) != len(plan):
        return False
    for number, (entry, planned) in enumerate(zip(phrases, plan, strict=True), start=1):
        wanted = {"id": _stem(number, planned.text), "text": planned.text, **planned.meaning()}
        if any(entry.get(k) != v for k, v in wanted.items()) or \
                set(entry) - {"speech_start_ms", "speech_end_ms", "files", "sha256"} != \
                set(wanted):
            return False
        for name, digest in entry.get("sha256", {}).items():
            path = out_dir / name
            if not path.is_file() or _sha256(path) != digest:
                return False
    return True


def _files(out_dir: Path) -> set[str]:
    """The audio files the folder's manifest lists (none when it has none)."""
    try:
        phrases = json.loads((out_dir / MANIFEST).read_text()).get("phrases", [])
        return {Path(name).name for p in phrases for name in p["files"].values()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return set()


def _refuse_other_scenario(out_dir: Path, scenario_name: str) -> None:
    try:
        other = json.loads((out_dir / MANIFEST).read_text()).get("scenario")
    except (OSError, ValueError, AttributeError):
        return
    if other not in (None, scenario_name):
        raise VoicebotError(
            f"{out_dir} holds the caller audio of {other}, not {scenario_name}: write "
            f"{scenario_name}'s elsewhere (--out out/caller-audio/{scenario_name})")


def default_out(scenario_path: Path) -> Path:
    """Where a scenario's caller audio goes by default: ``loadtests/audio`` for the demo,
    ``out/caller-audio/<name>`` for the others (:func:`loadtests.phrases.audio_dir`)."""
    return audio_dir(load_scenario(scenario_path).name)


def build_caller_audio(scenario_path: Path, out_dir: Path) -> dict[str, Any]:
    """Speak every phrase a caller of the scenario needs into ``out_dir`` (nothing when
    it already holds them, see :func:`is_current`); returns the manifest."""
    scenario = load_scenario(scenario_path)
    header = _header(scenario.name, scenario.language)
    plan = phrase_plan(scenario)
    _refuse_other_scenario(out_dir, scenario.name)
    if is_current(out_dir, header, plan):
        log.info("%s already holds %d phrases of %s", out_dir, len(plan), scenario.name)
        manifest: dict[str, Any] = json.loads((out_dir / MANIFEST).read_text())
        return manifest
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    synth = EspeakSynthesizer(rate_wpm=_WPM)
    out_dir.mkdir(parents=True, exist_ok=True)
    phrases: list[dict[str, Any]] = []
    for number, planned in enumerate(plan, start=1):
        raw = synth.synthesize(planned.text)
        wide = resample(raw, in_rate_hz=synth.sample_rate_hz, out_rate_hz=16000)
        narrow = resample(raw, in_rate_hz=synth.sample_rate_hz, out_rate_hz=8000)
        stem = _stem(number, planned.text)
        wav, ulaw = out_dir / f"{stem}.wav", out_dir / f"{stem}.ulaw"
        save_wav(wav, wide, 16000)
        ulaw.write_bytes(encode(narrow, AudioEncoding.MULAW))
        start_ms, end_ms = _speech_bounds_ms(wide, 16000)
        phrases.append({
            "id": stem, "text": planned.text, **planned.meaning(),
            "speech_start_ms": start_ms, "speech_end_ms": end_ms,
            "files": {"pcm16-16000": wav.name, "mulaw-8000": ulaw.name},
            "sha256": {wav.name: _sha256(wav), ulaw.name: _sha256(ulaw)},
        })
    stale = _files(out_dir) - {name for p in phrases for name in p["files"].values()}
    manifest = {**header, "phrases": phrases}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    for name in sorted(stale):  # phrases the scenario no longer has
        (out_dir / name).unlink(missing_ok=True)
    log.info("spoke %d phrases of %s into %s", len(phrases), scenario.name, out_dir)
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

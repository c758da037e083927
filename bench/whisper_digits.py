"""Whisper on recorded speech over a phone line: card digits right, prompt WER, decode time.

``python -m bench.whisper_digits`` (pinned: ``taskset -c 1``, or ``--cpu 1``).
Inputs, all 8 kHz, through G.711 μ-law in 20 ms frames and the server's stream
resampler to 16 kHz (as a call's audio reaches the ASR):

* ``digits``: 16 four-digit strings (seed 0) joined from Debian's
  ``asterisk-core-sounds-en-wav`` recordings ``digits/0.wav`` … ``9.wav`` (a
  human voice) with 150-300 ms gaps, 300 ms of silence before and after;
* ``espeak``: 16 more (seed 1) spoken by espeak-ng ("four two one seven");
* ``prompts``: 16 recorded prompts of the same package, references from
  ``asterisk-core-sounds-en``'s ``core-sounds-en.txt.gz`` (typos fixed).

Digits are scored by :func:`voicebot.nlu.entities.extract_entities` (what the
dialog reads), prompts by word error rate after normalisation (lower case,
numerals as digit words, punctuation dropped).  Digit strings are decoded in
the scenario's digits slot domain, prompts in its general domain, as the
server would; ``--prompts none`` decodes without any prompt.  Each utterance
is decoded ``--repeats`` times (greedy: same text); times are ``finish()``,
fallbacks included.  Writes ``<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib.metadata
import json
import os
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from loadtests.machine import cpu_model
from voicebot.audio.codecs import AudioEncoding, decode, encode
from voicebot.audio.resample import StreamResampler, resample
from voicebot.whisper.decoding import EncoderWindow

from .accuracy_text import normalize_text, word_errors
from .speechdata import parse_asterisk_texts

__all__ = [
    "APT_HINT",
    "Clip",
    "espeak_digits",
    "main",
    "phone_line",
    "recorded_digits",
    "recorded_prompts",
    "sounds_available",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
APT_HINT = "apt-get install -y asterisk-core-sounds-en-wav asterisk-core-sounds-en"
LINE_RATE_HZ = 8000
ASR_RATE_HZ = 16000
FRAME_MS = 20
PROMPT_NAMES = (
    "auth-thankyou", "cancelled", "vm-goodbye", "vm-sorry", "invalid", "ss-noservice",
    "followme/pls-hold-while-try", "privacy-prompt", "vm-mismatch", "agent-alreadyon",
    "priv-introsaved", "vm-instructions", "queue-periodic-announce", "tt-allbusy",
    "dir-intro", "vm-msginstruct",
)  # fmt: skip
_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_MODELS = ("whisper-tiny.en", "whisper-base")
NOTES_MARKER = "<!-- notes: kept when the report is regenerated -->"
_BARE = "utterance-bare"  # the window before the guard: utterance + 200 ms, no fallback
_WINDOWS = ("30s", "utterance", _BARE)

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Clip:
    """One utterance: ``set`` (digits, espeak, prompts), its reference, 16 kHz PCM."""

    set: str
    reference: str
    pcm: Pcm


def sounds_available() -> bool:
    """Whether Debian's Asterisk recordings and their transcripts are installed."""
    return (SOUNDS_DIR / "digits" / "0.wav").is_file() and TRANSCRIPTS.is_file()


def _read_wav(path: Path) -> Pcm:
    with wave.open(str(path)) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (LINE_RATE_HZ, 1, 2):
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def phone_line(pcm: Pcm) -> Pcm:
    """8 kHz PCM through μ-law in 20 ms frames and the server's stream resampler (16 kHz)."""
    step = LINE_RATE_HZ * FRAME_MS // 1000
    resampler = StreamResampler(in_rate_hz=LINE_RATE_HZ, out_rate_hz=ASR_RATE_HZ)
    wire = encode(pcm, AudioEncoding.MULAW)
    parts = [resampler.process(decode(wire[i : i + step], AudioEncoding.MULAW))
             for i in range(0, len(wire), step)]  # fmt: skip
    return np.concatenate([*parts, resampler.flush()])


def _silence(ms: float) -> Pcm:
    return np.zeros(round(LINE_RATE_HZ * ms / 1000), dtype=np.int16)


def _digit_strings(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(str(d) for d in rng.integers(0, 10, 4)) for _ in range(count)]


def recorded_digits(count: int = 16, *, seed: int = 0) -> list[Clip]:
    """Four-digit strings of Asterisk's recorded digits, 150-300 ms apart, over the line."""
    rng = np.random.default_rng(seed + 1000)
    clips = []
    for digits in _digit_strings(count, seed):
        parts = [_silence(300)]
        for i, digit in enumerate(digits):
            parts.append(_read_wav(SOUNDS_DIR / "digits" / f"{digit}.wav"))
            parts.append(_silence(300 if i == len(digits) - 1 else rng.uniform(150, 300)))
        clips.append(Clip("digits", digits, phone_line(np.concatenate(parts))))
    return clips


def espeak_digits(count: int = 16, *, seed: int = 1) -> list[Clip]:
    """Four-digit strings spoken as digit words by espeak-ng, over the line."""
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    tts = EspeakSynthesizer()
    clips = []
    for digits in _digit_strings(count, seed):
        speech = tts.synthesize(" ".join(_DIGIT_WORDS[int(d)] for d in digits))
        speech = resample(speech, in_rate_hz=tts.sample_rate_hz, out_rate_hz=LINE_RATE_HZ)
        pcm = np.concatenate([_silence(300), speech, _silence(300)])
        clips.append(Clip("espeak", digits, phone_line(pcm)))
    return clips


def recorded_prompts(names: Sequence[str] = PROMPT_NAMES) -> list[Clip]:
    """Asterisk's recorded prompts with their reference texts, over the line."""
    texts = parse_asterisk_texts(gzip.decompress(TRANSCRIPTS.read_bytes()).decode("utf-8"))
    clips = []
    for name in names:
        reference = texts[name]  # the normaliser puts its misspellings right
        pcm = np.concatenate([_silence(300), _read_wav(SOUNDS_DIR / f"{name}.wav"), _silence(300)])
        clips.append(Clip("prompts", reference, phone_line(pcm)))
    return clips


def _run(
    model: Path, window: str, clips: Sequence[Clip], *, repeats: int, prompts: bool
) -> dict[str, Any]:
    """Decode ``clips`` with ``window`` (``utterance-bare``: no minimum window, no fallback)."""
    from voicebot.dialog.loader import load_scenario
    from voicebot.engines.whisper_asr import WhisperTranscriber
    from voicebot.nlu.entities import extract_entities

    scenario = load_scenario(REPO_ROOT / "scenarios" / "bank_card.yaml")
    options: dict[str, Any] = {} if prompts else {"slot_prompts": {}, "domain_prompt_tokens": 0}
    if window == _BARE:
        options.update(utterance_min_window_ms=0, fallback=False)
    encoder_window = cast(EncoderWindow, "utterance" if window == _BARE else window)
    asr = WhisperTranscriber(model=model, threads=1, encoder_window=encoder_window, **options)
    for name, phrases in scenario.asr_domains().items():
        asr.prepare_domain(name=name, phrases=phrases)
    domains = {"digits": scenario.asr_domain("digits"), "espeak": scenario.asr_domain("digits"),
               "prompts": scenario.asr_domain()}  # fmt: skip
    warm = asr.open_stream(domain=domains["prompts"])
    warm.feed(clips[0].pcm)
    warm.finish()
    before = asr.stats
    sets: dict[str, dict[str, Any]] = {}
    for clip in clips:
        row = sets.setdefault(clip.set, {"n": 0, "right": 0, "errors": 0, "words": 0,
                                         "fallbacks": 0, "times_ms": [], "wrong": []})  # fmt: skip
        for _ in range(repeats):
            stream = asr.open_stream(domain=domains[clip.set])
            stream.feed(clip.pcm)
            start = time.perf_counter()
            text = stream.finish().text
            row["times_ms"].append((time.perf_counter() - start) * 1000)
        row["n"] += 1
        decoded = stream.last_decoded
        row["fallbacks"] += decoded is not None and decoded.fallback is not None
        if clip.set == "prompts":
            ref = normalize_text(clip.reference).split()
            row["errors"] += word_errors(ref, normalize_text(text).split()).errors
            row["words"] += len(ref)
            right = word_errors(ref, normalize_text(text).split()).errors == 0
        else:
            right = extract_entities(text).get("digits") == clip.reference
        row["right"] += right
        if not right:
            row["wrong"].append({"reference": clip.reference, "heard": text[:200]})
    after = asr.stats
    fallbacks = {k: (v - before.fallbacks.get(k, 0)) // repeats
                 for k, v in after.fallbacks.items()}  # fmt: skip
    for row in sets.values():
        times = np.array(row.pop("times_ms"))
        row["mean_ms"], row["p95_ms"] = float(times.mean()), float(np.percentile(times, 95))
    return {"sets": sets, "fallbacks": {k: v for k, v in fallbacks.items() if v},
            "degenerate": (after.degenerate - before.degenerate) // repeats}  # fmt: skip


def _taskset_prefix() -> str:
    """``taskset -c N `` when this process was started pinned to fewer CPUs than there are."""
    cpus = sorted(os.sched_getaffinity(0))
    return f"taskset -c {','.join(map(str, cpus))} " if len(cpus) < (os.cpu_count() or 1) else ""




def _report(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Whisper on recorded digits and prompts over a μ-law phone line", "",
        f"Measured {meta['date']} with "
        + " then ".join(f"`{c}`" for c in meta["commands"]) + " (later runs replace "
        "the rows they measure).", "",
        f"* Models: REAL weights ({', '.join(meta['models'])}, int8, CTranslate2 "
        f"{meta['versions']['ctranslate2']}, faster-whisper {meta['versions']['faster-whisper']}).",
        f"* CPU: {meta['cpu']}; pinned to CPU(s) {meta['affinity']}, 1 thread; a shared "
        "machine, so times carry noise from other work.",
        f"* Repeats: {meta['repeats']} decodes per utterance (greedy: same text each time); "
        "decode time is `finish()` (30 s fallbacks included).",
        "* Prompts: `scenario` = what the server sends for bank_card (digit strings: the "
        "digits slot prompt, prompts: the scenario's vocabulary prompt); `none` = no prompt.",
        "* Windows: `30s`; `utterance` (default: at least 15 s, 30 s fallback when degenerate); "
        "`utterance-bare` = the window before this change (utterance + 200 ms, no fallback), "
        "with today's token budget and loop cut.",
        "* Sets (16 each): `digits` = four-digit strings of Asterisk's recorded digits "
        "(human voice), `espeak` = the same from espeak-ng, `prompts` = 16 recorded "
        "Asterisk prompts (1.5-15 s). 8 kHz → μ-law → 16 kHz as the server does.", "",
        "| model | window | prompts | digits right | espeak right | prompts WER | "
        "decode ms mean / p95: digits, espeak, prompts | "
        "30 s fallbacks: digits, espeak, prompts (reasons) | degenerate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        s = [r["sets"][name] for name in ("digits", "espeak", "prompts")]
        wer = 100 * s[2]["errors"] / s[2]["words"]
        times = ", ".join(f"{x['mean_ms']:.0f} / {x['p95_ms']:.0f}" for x in s)
        reasons = ", ".join(f"{k} {v}" for k, v in r["fallbacks"].items()) or "-"
        lines.append(
            f"| {r['model']} | {r['window']} | {r['prompts']} | {s[0]['right']}/{s[0]['n']} | "
            f"{s[1]['right']}/{s[1]['n']} | {wer:.1f}% | {times} | "
            f"{', '.join(str(x['fallbacks']) for x in s)} ({reasons}) | {r['degenerate']} |"
        )
    lines += _window_choice(rows)
    lines += ["", "Wrong answers (reference → heard):", ""]
    for r in rows:
        for name, s in r["sets"].items():
            for w in s["wrong"]:
                lines.append(f"* {r['model']} {r['window']} {r['prompts']} {name}: "
                             f"{w['reference']} → {w['heard']!r}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _wer(row: dict[str, Any]) -> float:
    prompts = row["sets"]["prompts"]
    return float(100 * prompts["errors"] / prompts["words"])


def _window_choice(rows: list[dict[str, Any]]) -> list[str]:
    """The rule: ``utterance`` qualifies if it gets as many recorded digit strings right
    as ``30s`` and its prompt WER is at most 1 point higher (espeak is not judged)."""
    lines = [
        "", "Window rule: `utterance` may be the default only if, on the recorded sets, it "
        "gets as many digit strings right as `30s` and its prompts WER is within 1 point "
        "(espeak is reported, not judged).", "",
    ]  # fmt: skip
    by_key = {(r["model"], r["prompts"], r["window"]): r for r in rows}
    for model, prompts, window in by_key:
        full = by_key.get((model, prompts, "30s"))
        if window != "utterance" or full is None:
            continue
        short = by_key[(model, prompts, window)]
        right = [x["sets"]["digits"]["right"] for x in (short, full)]
        ok = right[0] >= right[1] and _wer(short) - _wer(full) <= 1.0
        speed = [sum(x["sets"][k]["mean_ms"] for k in ("digits", "prompts")) for x in (short, full)]
        lines.append(
            f"* {model}, prompts {prompts}: digits {right[0]} vs {right[1]}/16, WER "
            f"{_wer(short):.1f}% vs {_wer(full):.1f}% → "
            f"{'utterance qualifies' if ok else 'keep 30s'}; mean decode "
            f"{speed[0] / speed[1]:.2f} x the 30 s window's (digits + prompts)."
        )
    return lines


def _row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["model"], row["window"], row["prompts"]


def _merged(
    old: dict[str, Any], meta: dict[str, Any], rows: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``old``'s rows with this run's replacing those of the same model, window, prompts."""
    new = {_row_key(r): r for r in rows}
    kept = [new.pop(_row_key(r), r) for r in old["rows"]]
    models = list(dict.fromkeys([*old["meta"]["models"], *meta["models"]]))
    commands = [*old["meta"]["commands"], *meta["commands"]]
    return {**meta, "models": models, "commands": commands}, kept + list(new.values())


def _write_report(path: Path, report: str) -> None:
    """Write ``report``, keeping what follows :data:`NOTES_MARKER` in the old file (notes)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else ""
    path.write_text(report + ("\n" + notes if notes else ""), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", nargs="+", default=list(_MODELS))
    parser.add_argument("--windows", nargs="+", default=list(_WINDOWS), choices=_WINDOWS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--prompts", nargs="+", choices=("scenario", "none"), default=["scenario", "none"]
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU first")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs/benchmarks/whisper-digits")
    parser.add_argument(
        "--merge", action="store_true", help="keep <out>.json's rows not measured this time"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite <out>.md from .json")
    args = parser.parse_args(argv)
    if args.report_only:
        data = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        _write_report(args.out.with_suffix(".md"), _report(data["meta"], data["rows"]))
        return 0
    pinned = "" if args.cpu is not None else _taskset_prefix()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if not sounds_available():
        print(f"Asterisk recordings missing: {APT_HINT}", file=sys.stderr)
        return 2
    from voicebot.modelhub.store import ensure

    clips = [*recorded_digits(), *espeak_digits(), *recorded_prompts()]
    rows = []
    for name in args.models:
        model = ensure(REPO_ROOT / "models/manifest.yaml", name, REPO_ROOT / "models/cache")
        for prompts in args.prompts:
            for window in args.windows:
                row = _run(model, window, clips, repeats=args.repeats,
                           prompts=prompts == "scenario")  # fmt: skip
                rows.append({"model": name, "window": window, "prompts": prompts, **row})
                print(json.dumps(rows[-1]), flush=True)
    command = f"{pinned}python -m bench.whisper_digits " + " ".join(argv or sys.argv[1:])
    meta = {
        "date": dt.date.today().isoformat(), "cpu": cpu_model(),
        "affinity": ",".join(map(str, sorted(os.sched_getaffinity(0)))),
        "commands": [command], "models": args.models, "repeats": args.repeats,
        "versions": {p: importlib.metadata.version(p) for p in ("ctranslate2", "faster-whisper")},
    }  # fmt: skip
    if args.merge and args.out.with_suffix(".json").is_file():
        meta, rows = _merged(json.loads(args.out.with_suffix(".json").read_text()), meta, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    report = _report(meta, rows)
    _write_report(args.out.with_suffix(".md"), report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

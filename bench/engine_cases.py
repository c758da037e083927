"""The engine cases of ``python -m bench engines``: what each case loads and times.

Each ``_measure_*`` runs inside the pinned child process started by
:mod:`bench.engines`; it times the adapter and the raw library call on the
same inputs and returns one report row.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from server.paths import default_scenarios_dir

from .engine_case_turn import TURN_CASES
from .engine_kit import (
    SAMPLE_RATE_HZ,
    EngineCase,
    Inputs,
    Params,
    Pcm,
    Unavailable,
    audio_seconds,
    chunks,
    ort_session,
    paired,
    result_row,
    rss_mb,
)

__all__ = ["BOT_REPLIES", "CALLER_UTTERANCES", "CASES"]

log = logging.getLogger(__name__)

SCENARIO = default_scenarios_dir() / "bank_card.yaml"
_PKG = "voicebot.engines."
CALLER_UTTERANCES = (
    "I lost my card yesterday, can you block it please",  # about 3 s
    "what is my balance", "yes", "four two one seven", "I want to speak to an agent",
)  # fmt: skip
BOT_REPLIES = (
    "Hello, thank you for calling Example Bank card services. How can I help you today?",
    "Please tell me the last four digits of your card.",
    "Your card is now blocked. A new card will arrive within five working days.",
)

def _measure_silero(inp: Inputs) -> dict[str, Any]:
    rss0 = rss_mb()
    from voicebot.vad.silero import SileroSpeechDetector

    detector = SileroSpeechDetector(threads=1)
    stream, size = detector.open_stream(), detector.window_samples
    windows = [w for _, pcm in inp.caller for w in chunks(pcm) if len(w) == size]
    stream.probabilities(windows[0])
    rss = rss_mb() - rss0
    reps = inp.reps(5)
    session = ort_session(detector.model_path)
    rows, context = [], np.zeros(64, dtype=np.float32)
    for window in windows:  # the adapter's input rows: 64 samples of context + the window
        samples = window.astype(np.float32) / 32768.0
        rows.append(np.concatenate((context, samples))[None, :])
        context = samples[-64:]
    state = {"h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)}

    def raw(row: Any) -> None:
        _, state["h"], state["c"] = session.run(None, {"input": row, **state})

    times, raw_times = paired(stream.probabilities, windows, raw, rows, reps)
    return result_row(
        model="Silero VAD v6", synthetic=False, unit="one 512-sample window (32 ms)",
        rss_mb=rss, times_s=times, audio_s=reps * len(windows) * size / SAMPLE_RATE_HZ,
        raw="InferenceSession.run on the same [1, 576] rows and LSTM state", raw_times_s=raw_times,
    )  # fmt: skip


def _measure_pocketsphinx(inp: Inputs) -> dict[str, Any]:
    from voicebot.dialog.loader import load_scenario

    scenario = load_scenario(SCENARIO)  # before rss0: not part of the engine
    domain, domains = scenario.asr_domain(), scenario.asr_domains()
    rss0 = rss_mb()
    from voicebot.engines.pocketsphinx_asr import PocketsphinxTranscriber

    asr = PocketsphinxTranscriber()
    for name, phrases in domains.items():
        asr.prepare_domain(name=name, phrases=phrases)

    def adapter(parts: list[Pcm]) -> tuple[float, float, str]:  # finish s, CPU s, text
        cpu = time.process_time()
        stream = asr.open_stream(domain=domain)
        for part in parts:
            stream.feed(part)
        start = time.perf_counter()
        text = stream.finish().text
        return time.perf_counter() - start, time.process_time() - cpu, text

    utterances = [chunks(pcm) for _, pcm in inp.caller]
    adapter(utterances[0])
    rss = rss_mb() - rss0
    reps = inp.reps(10)
    # Raw: the adapter's pooled decoder (same LM, search) fed the same noise-mixed audio.
    pooled, noise = getattr(asr, "_free", {}).get(False) or [], getattr(asr, "_noise", None)

    def raw(data: list[bytes]) -> tuple[float, float]:  # end_utt + hyp s, CPU s
        decoder, cpu = pooled[0].decoder, time.process_time()
        decoder.start_utt()
        for chunk in data:
            decoder.process_raw(chunk, False, False)
        start = time.perf_counter()
        decoder.end_utt()
        decoder.hyp()
        return time.perf_counter() - start, time.process_time() - cpu

    mixed = [pcm if noise is None else np.clip(
        pcm + noise[np.arange(len(pcm)) % len(noise)].astype(np.int32), -32768, 32767
    ).astype(np.int16) for _, pcm in inp.caller]  # fmt: skip
    data = [[part.tobytes() for part in chunks(pcm)] for pcm in mixed]
    pairs = [(adapter(parts), raw(chunks) if pooled else None)
             for _ in range(reps) for parts, chunks in zip(utterances, data, strict=True)]
    runs, raw_runs = [a for a, _ in pairs], [r for _, r in pairs if r is not None]
    heard = "; ".join(f"{t!r} -> {r[2]!r}" for (t, _), r in zip(inp.caller, runs, strict=False))
    return result_row(
        model="en-us acoustic model + bank_card trigram LM", synthetic=False,
        unit="finish() after feeding the utterance in 512-sample chunks", rss_mb=rss,
        times_s=[r[0] for r in runs], compute_s=sum(r[1] for r in runs),
        audio_s=reps * audio_seconds(inp.caller), raw_times_s=[r[0] for r in raw_runs],
        raw_compute_s=sum(r[1] for r in raw_runs),
        raw="the adapter's pooled Decoder: start_utt, process_raw per chunk, end_utt + hyp",
        notes=["RTF = process CPU time of feed() + finish() per audio second", f"heard: {heard}"],
    )  # fmt: skip


def _prepare_minilm(models_dir: Path, _voices_dir: Path, options: Params) -> Params:
    from voicebot.nlu.model_cache import build_models

    paths = build_models(models_dir)  # here, so that no build shows in the child's RSS
    model = paths.int8_model if options["precision"] == "int8" else paths.fp32_model
    return {"model": str(model), "tokenizer": str(paths.tokenizer)}


def _measure_minilm(inp: Inputs) -> dict[str, Any]:
    model, tokenizer_path = Path(inp.params["model"]), Path(inp.params["tokenizer"])
    texts = [text for text, _ in inp.caller]
    rss0 = rss_mb()
    from tokenizers import Tokenizer

    from voicebot.nlu.embedder import MAX_TOKENS, MiniLmEmbedder

    embedder = MiniLmEmbedder(model_path=model, tokenizer_path=tokenizer_path, threads=1)
    embedder.embed(texts[:1])
    rss = rss_mb() - rss0
    reps = inp.reps(60)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()  # as the embedder: one text, no padding
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    ids = [np.asarray([tokenizer.encode(text).ids], dtype=np.int64) for text in texts]
    feeds = [{"input_ids": i, "attention_mask": np.ones_like(i)} for i in ids]
    session = ort_session(model)
    session.run(["sentence_embedding"], feeds[0])
    times, raw_times = paired(lambda text: embedder.embed([text]), texts,
                               lambda feed: session.run(None, feed), feeds, reps)  # fmt: skip
    return result_row(
        model=f"MiniLM-L6 {inp.params['precision']}", synthetic=False,
        unit="embed() of one caller utterance, tokenizing included", rss_mb=rss,
        times_s=times, raw="InferenceSession.run on the same token ids",
        raw_times_s=raw_times, notes=[f"model file: {model}"],
    )  # fmt: skip


def _measure_espeak(inp: Inputs) -> dict[str, Any]:
    rss0 = rss_mb()
    from voicebot.engines import espeak_tts

    synth = espeak_tts.EspeakSynthesizer()
    synth.synthesize(BOT_REPLIES[0])
    rss = rss_mb() - rss0
    reps, samples = inp.reps(10), []
    # Raw: espeak_Synth on the library the adapter loaded, with the voice and rate it set.
    runtime: Any = getattr(espeak_tts, "_runtime", None)

    def raw(buffer: Any) -> None:
        with espeak_tts._lock:
            runtime.chunks = []
            runtime.lib.espeak_Synth(
                ctypes.cast(buffer, ctypes.c_void_p), len(buffer), 0, 1, 0, 1, None, None
            )
            runtime.chunks = []

    buffers = [ctypes.create_string_buffer(t.encode() + b"\0") for t in BOT_REPLIES]
    times, raw_times = paired(
        lambda text: samples.append(len(synth.synthesize(text))), BOT_REPLIES, raw, buffers, reps
    )
    return result_row(
        model=f"espeak-ng en-us {synth.rate_wpm} wpm", synthetic=False,
        unit="synthesize() of one bot reply", rss_mb=rss, times_s=times,
        audio_s=sum(samples) / synth.sample_rate_hz, raw_times_s=raw_times,
        raw="libespeak-ng espeak_Synth, synchronous, through the adapter's ctypes callback",
        notes=["raw skips the per-call voice/rate/seed settings, the join and the trim"],
    )  # fmt: skip


def _prepare_whisper(models_dir: Path, _voices_dir: Path, options: Params) -> Params:
    from voicebot.whisper.synthetic import build_synthetic_whisper

    name = f"whisper-{options['size']}"  # built where the registry puts synthetic:<name>
    return {"model": str(build_synthetic_whisper(name, models_dir / "synthetic" / name))}


def _raw_whisper(model: Path, window: str, prompt: str | None, synthetic: bool) -> Any:
    """``decode(audio, tokens)``: faster-whisper / CTranslate2 with the adapter's settings."""
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    whisper = WhisperModel(str(model), "cpu", compute_type="int8", cpu_threads=1, num_workers=1)
    hf, multilingual = whisper.hf_tokenizer, whisper.model.is_multilingual
    tokenizer = Tokenizer(hf, multilingual, task="transcribe", language="en")
    suppress = set(get_suppressed_tokens(tokenizer, [-1]))
    if synthetic:  # as the adapter: random weights decode text tokens only, never the end
        suppress.update(range(tokenizer.eot, hf.get_vocab_size(with_added_tokens=True)))
    prompt_ids = whisper.get_prompt(tokenizer, [], without_timestamps=True, hotwords=prompt)

    def decode(audio: npt.NDArray[np.float32], tokens: int) -> int:
        p = len(prompt_ids)  # CTranslate2 stops after min(max_length // 2, max_length - p + 1)
        max_length = min(448, max(2 * tokens, tokens + p - 1))  # 448 text positions
        if window == "30s":
            segments, _ = whisper.transcribe(
                audio, language="en", beam_size=1, temperature=0.0, vad_filter=False,
                condition_on_previous_text=False, without_timestamps=True, hotwords=prompt,
                suppress_tokens=sorted(suppress), max_new_tokens=max_length - p,
                no_speech_threshold=None,
            )  # fmt: skip
            return sum(len(s.tokens) for s in segments)
        padded = np.concatenate([audio, np.zeros(SAMPLE_RATE_HZ // 5, np.float32)])  # 200 ms
        features = whisper.feature_extractor(padded)
        frames = features.shape[-1] - features.shape[-1] % 2
        encoded = whisper.encode(np.ascontiguousarray(features[:, :frames]))
        return len(whisper.model.generate(
            encoded, [prompt_ids], beam_size=1, max_length=max_length, return_scores=True,
            suppress_tokens=sorted(suppress), suppress_blank=True, return_no_speech_prob=True,
            max_initial_timestamp_index=50,
        )[0].sequences_ids[0])  # fmt: skip

    return decode


def _measure_whisper(inp: Inputs) -> dict[str, Any]:
    from voicebot.dialog.loader import load_scenario

    scenario = load_scenario(SCENARIO)
    domain, phrases = scenario.asr_domain(), scenario.asr_domains()[scenario.asr_domain()]
    model, window = Path(inp.params["model"]), inp.params["window"]
    rss0 = rss_mb()
    from voicebot.engines.whisper_asr import WhisperTranscriber

    asr = WhisperTranscriber(model=model, threads=1, encoder_window=window)
    asr.prepare_domain(name=domain, phrases=phrases)

    def adapter(pcm: Pcm) -> tuple[float, int]:  # finish() seconds, tokens decoded
        stream = asr.open_stream(domain=domain)
        for part in chunks(pcm):
            stream.feed(part)
        start = time.perf_counter()
        stream.finish()
        seconds, decoded = time.perf_counter() - start, stream.last_decoded
        return seconds, decoded.tokens if decoded is not None else 0

    first = adapter(inp.caller[0][1])
    rss = rss_mb() - rss0
    raw = _raw_whisper(model, window, asr.domain_prompt(domain), asr.synthetic)
    raw(inp.caller[0][1].astype(np.float32) / 32768.0, first[1])  # warm-up, as the adapter
    runs, raw_runs, reps = [], [], inp.reps(3)
    for _, pcm in [utterance for _ in range(reps) for utterance in inp.caller]:
        runs.append(adapter(pcm))  # then the raw call on the same audio and token budget
        start = time.perf_counter()
        tokens = raw(pcm.astype(np.float32) / 32768.0, runs[-1][1])
        raw_runs.append((time.perf_counter() - start, tokens))
    return result_row(
        model=f"whisper-{inp.params['size']} int8, {window} window", synthetic=asr.synthetic,
        unit="finish() of an utterance (the whole decode)", times_s=[r[0] for r in runs],
        rss_mb=rss, audio_s=reps * audio_seconds(inp.caller), raw_times_s=[t for t, _ in raw_runs],
        raw=("WhisperModel.transcribe" if window == "30s" else "log-mel features + CTranslate2 "
             "encode + generate") + ", same settings and token budget",
        notes=[f"tokens decoded, adapter / raw: {sum(r[1] for r in runs)} / "
               f"{sum(n for _, n in raw_runs)}"],
    )  # fmt: skip


def _prepare_piper(_models_dir: Path, voices_dir: Path, options: Params) -> Params:
    path = voices_dir / f"{options['voice']}.onnx"
    if not path.is_file():
        raise Unavailable(f"{path} not found")
    return {"voice_path": str(path)}


def _measure_piper(inp: Inputs) -> dict[str, Any]:
    voice_path = Path(inp.params["voice_path"])
    rss0 = rss_mb()
    from voicebot.engines.piper_tts import PiperSynthesizer

    tts = PiperSynthesizer(voice_path=voice_path, threads=1)
    tts.synthesize(BOT_REPLIES[0])
    rss = rss_mb() - rss0
    reps, samples = inp.reps(5), []
    inference = json.loads(Path(f"{voice_path}.json").read_text())["inference"]
    scales = np.asarray([inference[k] for k in ("noise_scale", "length_scale", "noise_w")])
    feeds = [
        [{"input": np.asarray([ids], np.int64), "input_lengths": np.asarray([len(ids)]),
          "scales": scales.astype(np.float32)} for ids in tts.phoneme_ids(text)]
        for text in BOT_REPLIES
    ]  # fmt: skip
    session = ort_session(voice_path)
    session.run(None, feeds[0][0])  # warm-up, as the adapter's
    times, raw_times = paired(
        lambda text: samples.append(len(tts.synthesize(text))), BOT_REPLIES,
        lambda sentences: [session.run(None, feed) for feed in sentences], feeds, reps,
    )  # fmt: skip
    return result_row(
        model=voice_path.stem, synthetic=tts.synthetic, unit="synthesize() of one bot reply",
        rss_mb=rss, times_s=times, raw_times_s=raw_times,
        audio_s=sum(samples) / tts.sample_rate_hz,
        raw="InferenceSession.run per sentence on the same phoneme ids (no phonemizing)",
    )  # fmt: skip


CASES: tuple[EngineCase, ...] = (
    EngineCase("silero-vad", "silero-vad", "voicebot.vad.silero", _measure_silero),
    EngineCase("pocketsphinx", "pocketsphinx", f"{_PKG}pocketsphinx_asr", _measure_pocketsphinx),
    *(EngineCase(f"minilm-{p}", "minilm", "voicebot.nlu.embedder", _measure_minilm,
                 _prepare_minilm, {"precision": p}) for p in ("fp32", "int8")),
    EngineCase("espeak-ng", "espeak-ng", _PKG + "espeak_tts", _measure_espeak),
    *(EngineCase(f"synthetic:whisper-{size}/{window}", "whisper", _PKG + "whisper_asr",
                 _measure_whisper, _prepare_whisper, {"size": size, "window": window})
      for size in ("tiny", "base", "small") for window in ("30s", "utterance")),
    *(EngineCase(f"piper:{voice}", "piper", _PKG + "piper_tts", _measure_piper,
                 _prepare_piper, {"voice": voice})
      for voice in ("en_US-synthetic-x_low", "en_US-synthetic-medium")),
    *TURN_CASES,
)  # fmt: skip
"""Every case, in report order; ``run_engine_bench(cases=...)`` picks by name or engine."""


"""The end-of-turn model's cases of ``python -m bench engines``: Smart Turn v3.2.

One case per turn length (2 s and 8 s; the model always hears an 8 s window,
shorter turns are padded, so the two differ only in the features' input): the
adapter's ``predict`` (log-mel features + the ONNX call, what a policy's request
waits for in the cell) against the raw ``InferenceSession.run`` on the same ready
features, paired.  The turns are the bench's espeak-ng caller utterances joined
and repeated to the length, each starting at a different utterance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from server.paths import default_manifest

from .engine_kit import (
    SAMPLE_RATE_HZ,
    EngineCase,
    Inputs,
    Params,
    Pcm,
    ort_session,
    paired,
    result_row,
    rss_mb,
)

__all__ = ["TURN_CASES", "TURN_SECONDS"]

TURN_SECONDS = (2, 8)
_MODEL = "smart-turn-v3.2"


def _prepare_smart_turn(models_dir: Path, _voices_dir: Path, _options: Params) -> Params:
    """The pulled model's path (EngineUnavailableError, "not available", when not pulled)."""
    from voicebot.engines.registry import EngineOptions, model_path

    options = EngineOptions(models_dir=models_dir, manifest=default_manifest())
    return {"model": str(model_path(_MODEL, options))}


def _turns(inp: Inputs, seconds: float) -> list[Pcm]:
    """One turn of ``seconds`` per caller utterance, starting with it."""
    pcms = [pcm for _, pcm in inp.caller]
    samples = int(seconds * SAMPLE_RATE_HZ)
    return [np.resize(np.concatenate(pcms[i:] + pcms[:i]), samples) for i in range(len(pcms))]


def _measure_smart_turn(inp: Inputs) -> dict[str, Any]:
    seconds = float(inp.params["seconds"])
    turns = _turns(inp, seconds)
    rss0 = rss_mb()
    from voicebot.engines.smart_turn import INPUT_NAME, SmartTurnDetector
    from voicebot.turn.features import turn_features

    detector = SmartTurnDetector(model_path=inp.params["model"], threads=1)
    detector.predict(turns[0])
    rss = rss_mb() - rss0
    session = ort_session(detector.model_path)
    features = [{INPUT_NAME: turn_features(turn)} for turn in turns]
    session.run(None, features[0])  # warm-up, as the adapter's
    verdicts: list[float] = []
    times, raw_times = paired(
        lambda pcm: verdicts.append(detector.predict(pcm).complete_prob), turns,
        lambda feed: session.run(None, feed), features, inp.reps(30),
    )  # fmt: skip
    return result_row(
        model=f"Smart Turn v3.2 int8, {seconds:g} s turn", synthetic=False,
        unit="predict() of a caller turn (log-mel features of the last 8 s + the model)",
        rss_mb=rss, times_s=times, raw_times_s=raw_times,
        raw="InferenceSession.run on the same [1, 80, 800] features",
        notes=[f"complete probability of the espeak-ng turns: {min(verdicts):.2f}-"
               f"{max(verdicts):.2f}; features alone: adapter minus raw"],
    )  # fmt: skip


TURN_CASES: tuple[EngineCase, ...] = tuple(
    EngineCase(f"smart-turn/{s}s", "smart-turn", "voicebot.engines.smart_turn",
               _measure_smart_turn, _prepare_smart_turn, {"seconds": s})
    for s in TURN_SECONDS
)
"""Appended to :data:`bench.engine_cases.CASES`."""

"""The turn-taking report's section on the end-of-turn policy, Smart Turn and the lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .turns_phone import LINE_SUFFIX
from .turns_policies import ASR_DECODE_MS, TurnModelAnswers

__all__ = ["notes_markdown"]


def notes_markdown(model: TurnModelAnswers, *, lines: Sequence[str],
                   plots: Mapping[str, str] | None = None,
                   whisper: tuple[int, float] | None = None) -> str:
    """The report's section on these policies; ``plots``: each line's plot file (the
    first line's is the report's own, shown above); ``whisper``: Whisper's decodes and
    their mean ms, when the ``…-whisper`` policies ran."""
    cost = ("its MEASURED inference time" if model.cost_ms is None else
            f"a fixed {model.cost_ms:.0f} ms")
    measured = (f"{model.calls} inferences on one thread of this machine, features "
                f"included: p50 {model.quantile_ms(50):.0f} ms, p95 "
                f"{model.quantile_ms(95):.0f} ms, the load above counted")
    phone = ("" if "phone" not in lines else
             f"\n* `…{LINE_SUFFIX}`: the same policy on the clips through a telephone line "
             "(16 kHz → 8 kHz with the project's soxr resampler, G.711 μ-law in 20 ms frames, "
             "the server's stream resampler back to 16 kHz): the VAD, the turn model and "
             "Whisper hear the narrow-band audio; the labels are the wide clips'.")
    others = [(line, name) for line, name in (plots or {}).items() if line != lines[0]]
    figures = "".join(f"\n\n![latency against cut-off rate, {line} line]({name})"
                      for line, name in others)
    asr = ("" if whisper is None else
           "\n* `…-whisper`: the expectations read the REAL Whisper tiny.en (the default "
           "stack's: int8, utterance window, beam 5, 200 ms lead silence) decoding the turn "
           "up to the pause in bank_card's slot domain (`bank_card/digits`, "
           "`bank_card/yes_no`), back its MEASURED decode time later "
           f"({whisper[0]} decodes, mean {whisper[1]:.0f} ms); a digit it misses keeps the "
           "turn open to the 2500 ms digits maximum, a digit it invents can end it early.")
    return f"""\
## End-of-turn policy and Smart Turn (`bench/turns_policies.py`)

The REAL `EndOfTurnPolicy` (`voicebot/vad/turn_policy.py`), fed as a call feeds it: the
windows through an `Endpointer` (speech / silence only) and a `Tick` per window on the
audio clock, the dialog's expectation before the caller speaks; its defaults unless
named (max silence 1500 ms, 2500 ms while digits are expected).

* `smart-turn`: the MODEL rule, expectations off (every turn free): at a short pause of
  200 ms the REAL Smart Turn v3.2 (`smart-turn-v3.2`, ONNX Runtime, one thread) hears
  the turn from 300 ms before its onset to the pause; a probability at or above the
  threshold (0.5; `-t0.7`, `-t0.85`) ends the turn, below it the policy listens on and
  asks again at the next pause; `-p300`: a 300 ms short pause; `-a`: the model hears
  the audio up to the ask, the pause's first 200 ms included (as pipecat feeds Smart
  Turn), instead of the turn up to the pause (what the policy's request names).
* `smart-turn+expect`: the same with the dialog's expectations: a yes/no question ends
  at a complete yes/no answer in the partial transcript; a digits slot of length N does
  not ask the model and ends when the partial transcript holds N digits, waiting through
  pauses between groups up to 2500 ms; free turns use the model.
* `silence-500+expect`: the SILENCE rule (500 ms; 800 ms while digits are expected) with
  the expectations.{asr}{phone}

Time on the clock: the turn model's verdict comes back {cost} after the window that
asked ({measured}). Partial transcripts, but for `…-whisper`, are the LABELS (the words
spoken so far, as in `session-today`: an ASR that never mishears, an OPTIMISTIC bound
for the expectations, in particular for their digit cut-offs), back
{ASR_DECODE_MS:.0f} ms after the short pause (Whisper tiny.en's mean decode of a
recorded digit string, docs/benchmarks/whisper-digits.md). An answer that comes back
after the caller has gone on is ignored, as in a call. Speculations the caller
discards cost CPU only and are not counted here.{figures}
"""

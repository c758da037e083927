"""The turn-taking benchmark's figures: per-policy summaries, the report, the plot.

For each policy, over the PAUSED turns: the cut-off rate (turns where the bot
answered before the caller had finished), overall, on digit strings read in groups
(``digits-*``), per voice, and per pause length (pauses cut into / pauses the caller
reached without having been cut off before).  Over the COMPLETE turns: how many were
cut early (in a gap between words), and the end of speech → decision latency, p50 and
p95 (linear interpolation), of those that were not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .turns import PolicySpec, TurnOutcome
from .turns_data import TurnClip

__all__ = ["VOICE_LABELS", "PolicySummary", "plot", "report_markdown", "summarize"]

VOICE_LABELS = {
    "espeak-ng": "espeak-ng en-us 165 wpm (SYNTHETIC)",
    "piper-joe": "Piper en_US-joe-medium (SYNTHETIC)",
    "asterisk-allison": "Allison Smith, Asterisk core sounds (REAL)",
}


_NOTES = """\
## How the turns are made

Each turn is 500 ms of silence, the caller's words, and 3 s of silence (time for every
policy to decide). PAUSED turns stop mid-turn for 300, 500, 700, 900 or 1200 ms (the
lengths cycle over the turns, so the cut-off rate depends on that mix: compare
policies on the same set, and read the per-pause table); COMPLETE turns say the same
words without the pause. Kinds: digit strings read in groups (2+2, 4+4, 3+3+4), "my
card number is … 4 digits", hesitations ("I want to … check my balance"), lists,
yes/no answers (complete only), and Allison's recorded Asterisk prompts (complete,
and cut at their longest phrase break, a quiet run of 120 ms or more, for the paused
version). The synthetic voices say a paused turn with commas and the comma's silence
is stretched to the pause (the words before it keep their continuing intonation); the
recorded digits (8 kHz, resampled to 16 kHz with the project's soxr resampler) are
joined 100-250 ms apart within a group. Silences are digital zeros. Labels come from
the audio's energy (|sample| > 300); every pause is checked to be heard by Silero as
silence for all but its last 200 ms at most (tests/unit/test_bench_turns.py).

## Policies

* `silence-N`: the project's `Endpointer` with `min_silence_ms` N and nothing else.
  `silence-500` is the rule a turn ends by today outside digit slots.
* `session-today`: the Session's own turn taking (`TurnTaking` over the bank_card
  endpointing: 500 ms, 800 ms while a digit string is expected) with the default
  stack's speculative ASR at 200 ms of pause, which ends a digits turn of known length
  as soon as its transcript holds that many digits. The transcript here is the
  labels' (an ASR that makes no mistakes and takes no time), so its latency is a lower
  bound and its digit cut-offs those of a perfect recogniser.
* Any other policy plugs in with `--policy MODULE:NAME` (a `bench.turns.PolicySpec`:
  a factory of objects with `hear(window) -> TurnDecision | None`).

## Reproduce

```sh
python -m bench turns            # builds the set into out/turns/ on first use (~1 min)
python -m bench turns --policy my.module:policies   # more policies on the same set
```
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicySummary:
    """One policy's figures (rates in [0, 1], latencies in ms; NaN when none)."""

    policy: str
    family: str
    paused: int
    cut_offs: int
    digits_paused: int
    digits_cut_offs: int
    per_voice: Mapping[str, tuple[int, int]]  # voice -> (paused turns, cut-offs)
    per_pause: Mapping[int, tuple[int, int]]  # pause ms -> (pauses reached, cut into)
    complete: int
    complete_cut: int
    undecided: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_per_voice: Mapping[str, tuple[float, float]]  # voice -> (p50, p95)

    @property
    def cut_off_rate(self) -> float:
        return self.cut_offs / self.paused if self.paused else math.nan

    @property
    def digits_cut_off_rate(self) -> float:
        return self.digits_cut_offs / self.digits_paused if self.digits_paused else math.nan


def _quantiles(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return float(p50), float(p95)


def _pauses(outcome: TurnOutcome, clip: TurnClip) -> list[tuple[int, bool]]:
    """The pauses the caller reached before the decision: (planned ms, cut into).  A
    cut-off falls in the last one reached (:func:`bench.turns.judge`)."""
    decided = outcome.decided_ms
    reached = [planned for pause, planned in zip(clip.pauses, clip.spec.pauses_ms, strict=True)
               if decided is None or decided >= pause.start_ms]
    return [(ms, outcome.cut_off and i == len(reached) - 1) for i, ms in enumerate(reached)]


def summarize(outcomes: Sequence[TurnOutcome], clips: Sequence[TurnClip],
              policies: Sequence[PolicySpec]) -> list[PolicySummary]:
    """One summary per policy, in ``policies``' order."""
    by_id = {c.id: c for c in clips}
    summaries = []
    for spec in policies:
        own = [o for o in outcomes if o.policy == spec.name]
        paused = [o for o in own if o.kind == "paused"]
        complete = [o for o in own if o.kind == "complete"]
        digits = [o for o in paused if o.category.startswith("digits-")]
        voices = sorted({o.voice for o in own})
        per_pause: dict[int, list[int]] = {}
        for outcome in paused:
            for ms, cut in _pauses(outcome, by_id[outcome.clip_id]):
                counts = per_pause.setdefault(ms, [0, 0])
                counts[0] += 1
                counts[1] += int(cut)
        latencies = [o.latency_ms for o in complete if o.latency_ms is not None]
        summaries.append(PolicySummary(
            policy=spec.name, family=spec.family, paused=len(paused),
            cut_offs=sum(o.cut_off for o in paused), digits_paused=len(digits),
            digits_cut_offs=sum(o.cut_off for o in digits),
            per_voice={v: (sum(o.voice == v for o in paused),
                           sum(o.cut_off for o in paused if o.voice == v)) for v in voices},
            per_pause={ms: (n, cut) for ms, (n, cut) in sorted(per_pause.items())},
            complete=len(complete), complete_cut=sum(o.cut_off for o in complete),
            undecided=sum(o.decided_ms is None for o in own),
            latency_p50_ms=_quantiles(latencies)[0], latency_p95_ms=_quantiles(latencies)[1],
            latency_per_voice={v: _quantiles([o.latency_ms for o in complete
                                              if o.voice == v and o.latency_ms is not None])
                               for v in voices}))
    return summaries


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} % ({part}/{whole})" if whole else "-"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def report_markdown(summaries: Sequence[PolicySummary], clips: Sequence[TurnClip],
                    meta: Mapping[str, Any]) -> str:
    """The report, ``docs/benchmarks/turn-taking.md``."""
    voices = [v for v in VOICE_LABELS if any(c.spec.voice == v for c in clips)]
    count = {(v, k): sum(c.spec.voice == v and c.spec.kind.value == k for c in clips)
             for v in voices for k in ("paused", "complete")}
    lines = [
        "# Turn-taking benchmark: cut-offs and end-of-turn latency",
        "",
        f"{meta['date']}, {meta['cpu']}, one thread (load average {meta['load']} while it "
        f"ran; the replay is offline, so load changes its run time, not its figures). "
        f"VAD: REAL Silero (manifest model `silero-vad`, the default stack's), 512-sample "
        f"windows fed from 20 ms frames through the Session's Framer; end-of-turn rules "
        f"on the audio clock. Set `{meta['key']}` (seed {meta['seed']}): "
        f"{len(clips)} turns, REAL (recorded) and SYNTHETIC (text-to-speech) voices:",
        "",
        "| voice | paused turns | complete turns |",
        "|---|---|---|",
        *[f"| {VOICE_LABELS[v]} | {count[(v, 'paused')]} | {count[(v, 'complete')]} |"
          for v in voices],
        "",
        "**Cut-off**: the policy ended the turn more than 100 ms before the caller's speech "
        "ended (the bot would answer into a pause the caller meant to continue after). "
        "**Latency**: labelled end of speech (energy) → the decision, on COMPLETE turns "
        "not cut; the bot's first audio comes after that by the final ASR, NLU and first "
        "TTS sentence.",
        "",
        "| policy | paused turns cut off | digits in groups cut off | "
        + " | ".join(f"cut off, {v}" for v in voices)
        + " | complete turns cut early | latency p50 ms | latency p95 ms | undecided |",
        "|---|---|---|" + "---|" * len(voices) + "---|---|---|---|",
    ]
    for s in summaries:
        per_voice = " | ".join(_pct(s.per_voice.get(v, (0, 0))[1], s.per_voice.get(v, (0, 0))[0])
                               for v in voices)
        lines.append(
            f"| {s.policy} | {_pct(s.cut_offs, s.paused)} | "
            f"{_pct(s.digits_cut_offs, s.digits_paused)} | {per_voice} | "
            f"{_pct(s.complete_cut, s.complete)} | {_ms(s.latency_p50_ms)} | "
            f"{_ms(s.latency_p95_ms)} | {s.undecided} |")
    pauses = sorted({ms for s in summaries for ms in s.per_pause})
    lines += ["", "Pauses cut into, by pause length (pauses the caller reached uncut):", "",
              "| policy | " + " | ".join(f"{ms} ms" for ms in pauses) + " |",
              "|---|" + "---|" * len(pauses)]
    lines += [f"| {s.policy} | " + " | ".join(
        _pct(s.per_pause.get(ms, (0, 0))[1], s.per_pause.get(ms, (0, 0))[0]) for ms in pauses)
        + " |" for s in summaries]
    lines += ["", "Latency on complete turns by voice, p50 / p95 ms:", "",
              "| policy | " + " | ".join(voices) + " |", "|---|" + "---|" * len(voices)]
    lines += [f"| {s.policy} | " + " | ".join(
        " / ".join(_ms(q) for q in s.latency_per_voice.get(v, (math.nan, math.nan)))
        for v in voices) + " |" for s in summaries]
    lines += ["", f"![latency against cut-off rate]({meta['name']}.png)", "", _NOTES.rstrip()]
    return "\n".join(lines) + "\n"


def plot(summaries: Sequence[PolicySummary], path: Path, *, title: str) -> None:
    """Latency (p50, whisker to p95) against cut-off rate, one point per policy, one
    line per family; left all paused turns, right digit strings read in groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True)
    panels = (("paused turns", "cut_off_rate"), ("digit strings read in groups",
                                                  "digits_cut_off_rate"))
    families = list(dict.fromkeys(s.family for s in summaries))
    for ax, (label, rate) in zip(axes, panels, strict=True):
        for family in families:
            own = [s for s in summaries if s.family == family]
            x = [s.latency_p50_ms for s in own]
            y = [100 * getattr(s, rate) for s in own]
            line = ax.plot(x, y, "-o" if len(own) > 1 else "o", label=family)[0]
            ax.hlines(y, x, [s.latency_p95_ms for s in own], color=line.get_color(),
                      alpha=0.35, linewidth=2)
            for s, xi, yi in zip(own, x, y, strict=True):
                ax.annotate(s.policy.removeprefix("silence-") if family == "silence"
                            else s.policy, (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        ax.set_xlabel("end of speech → decision, ms (dot p50, bar to p95)")
        ax.set_ylabel(f"cut-off rate, % of {label}")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The Markdown report of ``python -m bench accuracy`` (docs/benchmarks/accuracy.md)."""

from __future__ import annotations

from typing import Any

__all__ = ["render_markdown"]

_WORST = 6


def _cut(text: str, size: int = 160) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def _pct(part: int, total: int) -> str:
    return f"{part}/{total} ({part / total:.0%})" if total else "-"


def _clean_wer(m: dict[str, Any]) -> float:
    """WER over the recordings that did not degenerate into a loop."""
    rows = [r for r in m["rows"] if not r["degenerate"]]
    words = sum(r["words"] for r in rows)
    return sum(r["errors"] for r in rows) / words if words else float("nan")


def _wer(m: dict[str, Any] | None) -> str:
    if m is None:
        return "not run"
    text = f"**{100 * m['wer']:.1f}%** ({m['recordings']} rec., {m['reference_words']} words"
    if "wer_strict" in m:
        text += f"; {100 * m['wer_strict']:.1f}% without spacing equivalence"
    if m["degenerate"]:
        text += f"; {m['degenerate']} looped, {100 * _clean_wer(m):.1f}% without them"
    return text + ")"


def _intent(m: dict[str, Any] | None, voice: str, part: str) -> str:
    if m is None or voice not in m["voices"]:
        return "not run"
    r = m["voices"][voice][part]
    return _pct(r["correct"], r["total"])


def _summary(report: dict[str, Any]) -> list[str]:
    voices = report["meta"]["caller_voices"]
    head = ["stack", "ASR", "WER Asterisk", "WER LibriVox", "card numbers right",
            *(f"intents, {v}" for v in voices),
            *(f"out-of-domain rejected, {v}" for v in voices)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in report["stacks"].items():
        m = s["measures"]
        cards = m.get("cards")
        cells = [name, s["meta"]["engines"]["asr"], _wer(m.get("wer-asterisk")),
                 _wer(m.get("wer-librivox")),
                 _pct(cards["correct"], cards["total"]) if cards else "not run",
                 *(_intent(m.get("intents"), v, "intents") for v in voices),
                 *(_intent(m.get("intents"), v, "out_of_domain") for v in voices)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _wer_details(name: str, key: str, m: dict[str, Any]) -> list[str]:
    lines = [f"#### {name}: {key}", "",
             f"- {m['recordings']} recordings, {m['audio_s']} s of speech, "
             f"{m['reference_words']} reference words: S {m['substitutions']}, "
             f"D {m['deletions']}, I {m['insertions']} → **WER {100 * m['wer']:.1f}%**; "
             f"{m['sentences_wrong']} recordings with an error, {m['empty']} heard as nothing, "
             f"{m['degenerate']} degenerate (a word looping, or over twice the words): "
             f"WER {100 * _clean_wer(m):.1f}% without those; "
             f"WER {100 * m.get('wer_strict', m['wer']):.1f}% scored strictly (no spacing "
             f"equivalence: ``touch tone`` against ``touchtone`` is two errors)",
             f"- ASR model synthetic: {m['asr_synthetic']}; time in the ASR {m['asr_s']} s "
             f"(RTF {m['asr_rtf']}: how long this took, not a speed figure, see "
             f"engines.md), wall {m['wall_s']} s on CPUs {m['cpus']}; "
             f"measured {m['date']}, code {m.get('code', 'unknown')}"]
    decoder = m.get("decoder")
    if decoder is not None:
        lines.append(f"- Whisper decodes: {decoder['decodes']}; utterance-window decodings "
                     f"redone in the 30 s window: {decoder['fallbacks'] or 'none'}; "
                     f"returned still degenerate (cut): {decoder['degenerate']}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in m["rows"]:
        groups.setdefault(r["id"].split("/")[0] if "/" in r["id"] else "(top level)",
                          []).append(r)
    if len(groups) > 1:
        lines += ["", "| group | recordings | words | WER |", "|---|---|---|---|"]
        for group, rows in sorted(groups.items()):
            words = sum(r["words"] for r in rows)
            wer = f"{100 * sum(r['errors'] for r in rows) / words:.1f}%" if words else "-"
            lines.append(f"| {group} | {len(rows)} | {words} | {wer} |")
    lines += ["", "Most errors:", ""]
    worst = sorted(m["rows"], key=lambda r: -r["errors"])[:_WORST]
    for r in worst:
        lines.append(f"- `{r['id']}` ({r['errors']} errors / {r['words']} words): "
                     f"\"{_cut(r['reference'])}\" → heard \"{_cut(r['heard'])}\"")
    return [*lines, ""]


def _cards(name: str, m: dict[str, Any]) -> list[str]:
    phases = m.get("front_phases", 8)
    lines = [f"#### {name}: card numbers", "",
             f"- **{m['correct']}/{m['total']} right**; the balance request was understood "
             f"and the digits asked for in {m['reached_digits']}/{m['total']} calls; "
             f"seed {m['seed']}; {m['wall_s']} s; {m['pinning']['server']}, "
             f"{m['pinning']['client']}; measured {m['date']}", "",
             "| card | gaps ms | cut apart by the front | heard (the turn's last transcript) "
             "| bot read back | right |", "|---|---|---|---|---|---|"]
    for r in m["rows"]:
        heard = r["heard"] if r["asked_for_digits"] else \
            f"(balance request heard as \"{r['balance_heard']}\" → {r['balance_intent']})"
        cut = r.get("front_splits")
        lines.append(f"| {r['card']} | {r['gaps_ms']} | "
                     f"{'-' if cut is None else f'{cut}/{phases}'} "
                     f"| {heard} | {r['read_back'] or '-'} "
                     f"| {'yes' if r['correct'] else '**no**'} |")
    split = [r for r in m["rows"] if r.get("front_splits")]
    wrong = [r for r in m["rows"] if not r["correct"]]
    if split:
        lines += ["", f"{len(split)}/{m['total']} cards are cut into several utterances by the "
                      f"server's front (Silero VAD + the digits endpoint) in at least one of "
                      f"{phases} alignments of the same audio (measured apart, no ASR): each "
                      "piece becomes a turn of its own, the slot rejects the first, the rest "
                      f"is heard alone. Of the {len(wrong)} cards read back wrong, "
                      f"{sum(1 for r in wrong if r.get('front_splits'))} are among them (a "
                      "last transcript holding only part of the card points to the same "
                      "failure in the live call's alignment)."]
    return [*lines, ""]


def _intents(name: str, m: dict[str, Any]) -> list[str]:
    lines = [f"#### {name}: intents", "",
             f"- {m['pinning']['server']}, {m['pinning']['client']}"]
    for voice, v in m["voices"].items():
        held, ood = v["intents"], v["out_of_domain"]
        lines += ["", f"{voice}: intents {_pct(held['correct'], held['total'])}, out-of-domain "
                      f"rejected {_pct(ood['correct'], ood['total'])}; {v['wall_s']} s; misses:",
                  ""]
        misses = [f"- \"{r['text']}\" → heard \"{r['heard']}\", {r['intent']} "
                  f"(meant {r['expected']})"
                  for r in (*v["intents"]["rows"], *v["out_of_domain"]["rows"])
                  if not r["correct"]]
        lines += misses or ["- none"]
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: summary table, then the details of every measure."""
    meta = report["meta"]
    lines = [
        "# Accuracy on real human speech", "",
        "Reproduce: `make bench-accuracy` (server and client pinned apart with `taskset`); "
        "speech from Debian: `apt-get install -y asterisk-core-sounds-en-wav "
        "asterisk-core-sounds-en pocketsphinx-testdata`. How it is measured: "
        "`bench/accuracy.py`.", "",
        f"- CPU: {meta['cpu']}; report generated {meta['generated']}",
        f"- caller line: {meta['line']}, everything through the server's own codec, "
        "resampling (8 → 16 kHz), Silero VAD and endpointing: WER runs that code and the "
        "stack's engines (built from its config file) in the bench process, without the "
        "socket and the real-time wait; card numbers and intents are whole calls over the "
        "native protocol to `voicebot serve --config <the stack's file>`",
        "- WER: **real human speech**: Asterisk core prompts (one professional voice, "
        "recorded at 8 kHz) and LibriVox clips (pocketsphinx-testdata, 16 kHz read speech, "
        "taken down to the 8 kHz line); open dictation (no scenario bias); "
        "text normalised by `bench/accuracy_text.py` (numbers: one word per digit)",
        "- card numbers: whole balance calls against `voicebot serve`; \"what is my balance\" "
        "in espeak-ng (synthetic), the four digits in the **real recorded** Asterisk voice",
        f"- intents: held-out phrasings (`bench/calls.py`), **synthetic** caller voices: "
        f"{', '.join(meta['caller_voices'])}",
        "- calls run at real-time pace, so where the VAD windows fall in the caller's speech "
        "differs from run to run, and pocketsphinx adapts its channel mean across "
        "utterances: expect call figures to move by a card or a phrasing between runs; "
        "the WER runs are deterministic",
        "- stacks are measured one at a time (`--stack`), so rows may come from different "
        "days and code: each row's engines *as measured* are under Stacks, its dates and "
        "commit under Details", "",
        "## Summary", "", *_summary(report), "",
        "## Stacks", "",
    ]
    for name, s in report["stacks"].items():
        lines += [f"- **{name}** (`{s['meta']['config']}`): "
                  + "; ".join(f"{k}: {v}" for k, v in s["meta"]["engines"].items())
                  + (f"; overrides {s['meta']['overrides']}" if s["meta"]["overrides"] else "")]
    lines += ["", "## Details", ""]
    for name, s in report["stacks"].items():
        m = s["measures"]
        for key in ("wer-asterisk", "wer-librivox"):
            if key in m:
                lines += _wer_details(name, key, m[key])
        if "cards" in m:
            lines += _cards(name, m["cards"])
        if "intents" in m:
            lines += _intents(name, m["intents"])
    return "\n".join(lines) + "\n"

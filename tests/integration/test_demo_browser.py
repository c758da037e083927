"""The browser softphone (``/demo``) in a real Chromium: a whole lost-card call.

Debian's Chromium (``/usr/bin/chromium``), driven by Playwright's Python package (its
driver ships in the wheel; no browser is downloaded), hears a WAV through Chromium's
fake microphone: the caller's turns spoken by espeak-ng with silences sized from the
bot's own prompts (espeak-ng too, as the ``lite`` stack speaks them).  "I lost my card"
is said 2 s into the greeting, so it barges in (the page gets ``clear``); then "yes",
then "goodbye" after each reply has surely finished.  The page places the call over the
native protocol with ``"events": ["turn"]``; the test reads the panel and the page's
counters once the bot hung up, and saves a screenshot (the path is printed).

The ``lite`` stack (pocketsphinx biased to the scenario, espeak-ng): no download, and
the same engines as tests/integration/test_server.py, which hear these espeak-ng turns
reliably; the real Whisper stack is exercised by test_stacks.py.  Chromium loops the
file: it is longer than the call.
"""

from __future__ import annotations

import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import REPO, ServerProcess, running_server
from voicebot.audio.codecs import AudioEncoding, decode, encode
from voicebot.audio.resample import resample

__all__: list[str] = []

CHROMIUM = Path("/usr/bin/chromium")
RATE_HZ = 16000
ARTIFACTS = REPO / "out" / "test-artifacts" / "demo"
GREETING = "Hello, thank you for calling Example Bank card services. How can I help you today?"
ASK_BLOCK = ("I am sorry to hear that. I can block your card right away so nobody can use "
             "it. Shall I block it now?")
BLOCKED = ("Your card is now blocked. A new card will arrive within five working days. "
           "Is there anything else I can help you with?")

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def _caller_wav(path: Path) -> float:
    """The caller's side of the call as a 16 kHz WAV; returns its length in seconds."""
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    synth = EspeakSynthesizer()

    def speak(text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
        pcm = synth.synthesize(text)
        out: np.ndarray[Any, np.dtype[np.int16]] = resample(
            pcm, in_rate_hz=synth.sample_rate_hz, out_rate_hz=RATE_HZ)
        return out

    def seconds(pcm: np.ndarray[Any, Any]) -> float:
        return len(pcm) / RATE_HZ

    lost, yes, goodbye = speak("I lost my card"), speak("yes"), speak("goodbye")
    assert seconds(speak(GREETING)) > 4.0  # long enough to be barged into at 2 s
    # Slack for the reply to start (endpoint, ASR, NLU, TTS on a loaded 2-core machine).
    plan = [(2.0, lost),
            (2.0 + seconds(lost) + 4.0 + seconds(speak(ASK_BLOCK)), yes)]
    plan.append((plan[-1][0] + seconds(yes) + 4.0 + seconds(speak(BLOCKED)), goodbye))
    total_s = plan[-1][0] + seconds(goodbye) + 30.0  # the goodbye, then quiet (no loop)
    line = np.zeros(int(total_s * RATE_HZ), dtype=np.int16)
    for at_s, pcm in plan:
        start = int(at_s * RATE_HZ)
        line[start:start + len(pcm)] = pcm
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes(line.tobytes())
    return total_s


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("demo"), "--config",
                        str(REPO / "server" / "configs" / "dev.yaml"), "--stack", "lite",
                        env={"VOICEBOT_AUTH": "none"}) as server:
        yield server


def test_a_lost_card_call_from_the_page(demo_server: ServerProcess, tmp_path: Path) -> None:
    wav = tmp_path / "caller.wav"
    call_s = _caller_wav(wav)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "demo_call.png"
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{demo_server.http}/demo")
            page.wait_for_function("() => document.querySelectorAll('#scenario option').length")
            assert page.input_value("#scenario") == "bank_card"
            page.select_option("#codec", "pcm16/16000")
            page.click("#call")
            # Function predicates: a string one would be eval'd, which the page's CSP forbids.
            page.wait_for_function("() => window.demoState.ended",
                                   timeout=(call_s + 60) * 1000)
            page.wait_for_function("() => window.demoState.bufferedMs === 0", timeout=20_000)
            state: dict[str, Any] = page.evaluate("window.demoState")
            js_line = page.evaluate(_JS_CODECS, SAMPLES.tolist())
            rows = page.locator("#turns tbody tr").all_inner_texts()
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, tmp_path / shot.name)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    print("\n".join(rows))
    assert not errors, errors
    turns = state["turns"]
    by_intent = {t["intent"]: t for t in turns if t["intent"]}
    assert turns[0]["turn"] == 0 and turns[0]["source"] == "greeting", turns
    assert "lost" in by_intent["lost_card"]["heard"].lower(), turns
    lost = by_intent["lost_card"]
    assert lost["end_rule"] and {"asr", "nlu", "endpoint_wait"} <= set(lost["parts_ms"]), lost
    assert lost["latency_ms"] > 0 and "block" in lost["text"]
    assert any("now blocked" in t["text"] and "block_confirm" in t["slots"]
               for t in turns), turns
    assert by_intent["goodbye"]["text"].startswith("Thank you for calling"), turns
    assert state["closeCode"] == 1000 and "hung up (completed)" in state["status"], state
    # The panel shows it; bot audio came and played; the barge-in emptied the buffer.
    assert any("lost_card" in row and "lost" in row.lower() for row in rows), rows
    assert state["framesSent"] > 50 * 15, state  # 20 ms frames, the whole call long
    assert state["audioFrames"] > 200 and state["audioMs"] > 10_000, state
    assert state["playedMs"] > 5_000, state
    assert state["clears"] >= 1 and state["clearedMs"] > 0, state
    assert "clear" in state["events"] and lost["turn"] == 1
    # The page's line codecs are the server's (voicebot/audio/codecs.py).
    assert bytes(js_line["mulaw"]) == encode(SAMPLES, AudioEncoding.MULAW)
    assert bytes(js_line["pcm16"]) == encode(SAMPLES, AudioEncoding.PCM16)
    assert js_line["decoded"] == decode(bytes(range(256)), AudioEncoding.MULAW).tolist()


SAMPLES = np.array([-32768, -32767, -20000, -1000, -33, -1, 0, 1, 32, 132, 1000, 5000,
                    20000, 32635, 32636, 32767, *range(-32768, 32768, 97)], dtype=np.int16)
_JS_CODECS = """async (samples) => {
  const m = await import("/demo/audio.js");
  const floats = Float32Array.from(samples, (s) => (s < 0 ? s / 32768 : s / 32767));
  const bytes = (buffer) => Array.from(new Uint8Array(buffer));
  const decoded = m.decodeFrame(Uint8Array.from({ length: 256 }, (_, i) => i).buffer, "mulaw");
  return { mulaw: bytes(m.encodeFrame(floats, "mulaw")),
           pcm16: bytes(m.encodeFrame(floats, "pcm16")),
           decoded: Array.from(decoded, (x) => Math.round(x * 32768)) };
}"""

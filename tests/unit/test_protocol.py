"""The native protocol codec: round trips and rejection of malformed frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot import protocol as p
from voicebot.errors import ProtocolError, UnsupportedAudioError

__all__: list[str] = []

# Call ids: any text (control characters included: the log layer escapes them), no lone
# surrogates (st.text never draws them; they have no UTF-8 encoding and are rejected).
ids = st.text(min_size=1, max_size=128)


@given(ids, st.sampled_from(p.SUPPORTED_ENCODINGS), st.sampled_from(p.SUPPORTED_RATES_HZ),
       st.none() | st.text(max_size=20), st.dictionaries(st.text(max_size=8), st.text(max_size=8)))
def test_start_round_trip(call_id: str, enc: str, rate: int, scenario: str | None,
                          meta: dict[str, str]) -> None:
    message = p.Start(call_id=call_id, encoding=enc, sample_rate_hz=rate, scenario=scenario,
                      metadata=meta)
    assert p.decode_client_message(p.encode_client_message(message)) == message


@given(st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=64))
def test_dtmf_round_trip(digits: str) -> None:
    assert p.decode_client_message(p.encode_client_message(p.Dtmf(digits))) == p.Dtmf(digits)


@given(st.integers(0, 10**6), st.text(max_size=50), st.floats(0, 1),
       st.dictionaries(st.sampled_from(["digits", "number", "yes_no"]),
                       st.one_of(st.text(max_size=5), st.integers(0, 10**6), st.booleans())))
def test_server_events_round_trip(
    turn: int, text: str, conf: float, ents: dict[str, object]
) -> None:
    events: list[p.ServerEvent] = [
        p.TranscriptEvent(turn, text, None, 5),
        p.IntentEvent(turn, text, round(conf, 4), ents),  # type: ignore[arg-type]
        p.BotSpeechStart(turn, text), p.BotSpeechEnd(turn, text, True, 10), p.Clear(turn),
        p.Transfer(text), p.Hangup(text), p.ErrorEvent(4400, text, False),
        p.Ready(text or "c", "s", "mulaw", 8000),
    ]
    for event in events:
        assert p.decode_server_event(p.encode_server_event(event)) == event


@given(st.binary(max_size=64))
def test_garbage_never_escapes_as_other_errors(data: bytes) -> None:
    try:
        p.decode_client_message(data.decode("latin-1"))
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("message", "error", "code"),
    [
        ("[]", ProtocolError, 4400),
        ('{"type": 3}', ProtocolError, 4400),
        ('{"type":"start","encoding":"pcm16","sample_rate_hz":8000}', ProtocolError, 4400),
        ('{"type":"start","call_id":"","encoding":"pcm16","sample_rate_hz":8000}',
         ProtocolError, 4400),
        ('{"type":"start","call_id":"a","encoding":"gsm","sample_rate_hz":8000}',
         UnsupportedAudioError, 4415),
        ('{"type":"start","call_id":"a","encoding":"pcm16","sample_rate_hz":true}',
         ProtocolError, 4400),
        ('{"type":"dtmf","digits":"12x"}', ProtocolError, 4400),
        ('{"type":"start","version":2,"call_id":"a","encoding":"pcm16","sample_rate_hz":8000}',
         ProtocolError, 4406),
        ('{"type":"start","version":true,"call_id":"a","encoding":"pcm16",'
         '"sample_rate_hz":8000}', ProtocolError, 4406),
        ('{"type":"start","call_id":"' + "c" * 129 + '","encoding":"pcm16",'
         '"sample_rate_hz":8000}', ProtocolError, 4400),
        ('{"type":"start","call_id":"\\ud800","encoding":"pcm16","sample_rate_hz":8000}',
         ProtocolError, 4400),
        ("[" * 5000, ProtocolError, 4400),
        ('{"type":"start","call_id":"a","encoding":"pcm16","sample_rate_hz":NaN}',
         ProtocolError, 4400),
    ],
)
def test_rejections(message: str, error: type[ProtocolError], code: int) -> None:
    with pytest.raises(error) as info:
        p.decode_client_message(message)
    assert info.value.close_code == code


def test_non_finite_floats_become_null() -> None:
    text = p.encode_server_event(p.IntentEvent(1, "x", float("nan")))
    assert json.loads(text)["confidence"] is None

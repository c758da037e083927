"""Handshake authentication: config parsing, each provider's scheme, tokens, exposure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers

from server.auth import (
    DETECT,
    ENDPOINTS,
    AuthConfig,
    Decision,
    HandshakeRequest,
    check_admin,
    check_exposure,
    check_handshake,
    endpoint_for_path,
    make_rate_limiter,
    parse_auth_config,
)
from server.auth_schemes import (
    Secret,
    SigningKey,
    mint_token,
    twilio_signature,
    twilio_url_variants,
    verify_token,
)
from voicebot.errors import ConfigError

__all__: list[str] = []

NOW = 1_800_000_000.0
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
TWILIO_TOKEN_2 = "fedcba9876543210fedcba9876543210"
VONAGE_SECRET = "vonage-signature-secret-0123456789"
NATIVE = "native-token-aaaaaaaaaaaaaaaa"
NATIVE_2 = "native-token-bbbbbbbbbbbbbbbb"
KEY_1 = "signing-key-one-1111111111111111"
KEY_2 = "signing-key-two-2222222222222222"
TELNYX = "telnyx-stream-token-3333333333"
EXOTEL_USER, EXOTEL_TOKEN = "exotel-api-key", "exotel-api-token-44444"
JAMBONZ_PASSWORD = "jambonz-password-55555"
ADMIN = "admin-token-666666666666666666"
SECRETS = (TWILIO_TOKEN, TWILIO_TOKEN_2, VONAGE_SECRET, NATIVE, NATIVE_2, KEY_1, KEY_2, TELNYX,
           EXOTEL_TOKEN, JAMBONZ_PASSWORD, ADMIN)
ENV = {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_AUTH_TOKEN_2": TWILIO_TOKEN_2,
       "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET, "NATIVE_A": NATIVE, "NATIVE_B": NATIVE_2,
       "KEY_1": KEY_1, "KEY_2": KEY_2, "TELNYX_TOKEN": TELNYX, "EXOTEL_TOKEN": EXOTEL_TOKEN,
       "JAMBONZ_PASSWORD": JAMBONZ_PASSWORD, "ADMIN": ADMIN}
SECTION: dict[str, Any] = {
    "token_keys": [{"id": "k1", "secret_env": "KEY_1"}, {"id": "k2", "secret_env": "KEY_2"}],
    "twilio": {"auth_tokens_env": ["TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_2"]},
    "vonage": {"signature_secrets_env": "VONAGE_SIGNATURE_SECRET", "api_key": "abcd1234"},
    "telnyx": {"tokens_env": "TELNYX_TOKEN"},
    "exotel": {"basic": [{"username": EXOTEL_USER, "password_env": "EXOTEL_TOKEN"}]},
    "jambonz": {"basic": {"username": "jambonz", "password_env": "JAMBONZ_PASSWORD"},
                "signed_tokens": True},
    "native": {"tokens_env": ["NATIVE_A", "NATIVE_B"], "signed_tokens": True},
    "asterisk": {"trusted_networks": ["10.20.0.0/16"]},
    "admin": {"tokens_env": "ADMIN"},
}


@pytest.fixture(scope="module")
def config() -> AuthConfig:
    return parse_auth_config(SECTION, env=ENV, base_dir=Path("/nonexistent"))


def _request(target: str, *headers: tuple[str, str], host: str = "bot.example.com",
             peer: str = "203.0.113.7", tls: bool = True) -> HandshakeRequest:
    return HandshakeRequest.from_target(target, [("Host", host), *headers], peer_ip=peer,
                                        tls=tls)


def _check(config: AuthConfig, target: str, *headers: tuple[str, str], now_s: float = NOW,
           **kw: Any) -> Decision:
    decision = check_handshake(_request(target, *headers, **kw), config, now_s=now_s)
    for secret in SECRETS:  # no decision ever shows a secret
        assert secret not in repr(decision)
    return decision


# Independent re-implementations of the documented algorithms (not the code under test).

def _twilio_sig(url: str, token: str) -> str:
    return base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwt(claims: dict[str, Any], secret: str, alg: str = "HS256") -> str:
    head = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    sig = _b64url(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def _basic(user: str, password: str) -> tuple[str, str]:
    return "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _bearer(token: str) -> tuple[str, str]:
    return "Authorization", f"Bearer {token}"


# ------------------------------------------------------------------ configuration


def test_no_section_none_and_bad_strings() -> None:
    assert parse_auth_config(None, env={}, base_dir=Path()) == AuthConfig()
    assert parse_auth_config(" None ", env={}, base_dir=Path()).disabled
    with pytest.raises(ConfigError, match="mapping or the word none") as info:
        parse_auth_config("hunter2-my-password", env={}, base_dir=Path())
    assert "hunter2" not in str(info.value)


def test_secret_sources_literal_env_file_and_rotation(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "t1").write_text(NATIVE + "\n")
    (tmp_path / "t2").write_text(NATIVE_2 + "\r\n")
    config = parse_auth_config({"native": {
        "tokens": "literal-token-0000000000",
        "tokens_env": "NATIVE_A",
        "tokens_file": ["secrets/t1", str(tmp_path / "t2")]}},
        env=ENV, base_dir=tmp_path)
    tokens = config.endpoint("native").tokens
    assert len(tokens) == 4
    for value in ("literal-token-0000000000", NATIVE, NATIVE, NATIVE_2):
        assert any(t.matches(value) for t in tokens)
    assert not any(t.matches(NATIVE + "\n") for t in tokens)


def test_docs_example_section_parses(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    block = block.replace("/run/secrets/", f"{tmp_path}/")
    section = yaml.safe_load(block)["auth"]
    env: dict[str, str] = {}
    for name, value in _walk(section):
        if name.endswith("_env"):
            env.update({var: "x" * 32 for var in ([value] if isinstance(value, str) else value)})
        elif name.endswith("_file"):
            Path(value).write_text("y" * 32 + "\n")
    config = parse_auth_config(section, env=env, base_dir=tmp_path)
    assert not config.anonymous_endpoints and config.network.rate_limit is not None
    assert check_exposure("0.0.0.0", config) is None


def _walk(node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [(k, v) for k, v in node.items()] + [p for v in node.values() for p in _walk(v)]
    if isinstance(node, list):
        return [p for v in node for p in _walk(v)]
    return []


def test_secrets_never_in_repr(config: AuthConfig) -> None:
    text = repr(config) + str(config) + f"{config}"
    for secret in SECRETS:
        assert secret not in text
    assert "***" in text and "abcd1234" in text  # the Vonage api_key is no secret
    value = Secret("s3cr3t-value")
    assert repr(value) == str(value) == f"{value}" == "Secret('***')"
    assert value == Secret("s3cr3t-value") != Secret("other") and len({value, value}) == 1
    assert value.matches("s3cr3t-value") and not value.matches("s3cr3t-valuf")


@pytest.mark.parametrize("section, match", [
    ({"native": {"tokens_env": "MISSING"}}, "auth.native.tokens_env: environment variable "
                                            "MISSING is not set"),
    ({"native": {"tokens_env": "EMPTY"}}, "empty or shorter"),
    ({"native": {"tokens_env": "SHORT"}}, "new-secret"),
    ({"native": {"tokens_file": "/nonexistent/token"}}, "cannot read /nonexistent/token"),
    ({"native": {"token_env": "NATIVE_A"}}, "unknown key auth.native.token_env"),
    ({"nativ": {"tokens_env": "NATIVE_A"}}, "unknown key auth.nativ"),
    ({"native": {"auth_tokens_env": "NATIVE_A"}}, "unknown key auth.native.auth_tokens_env"),
    ({"native": {"signed_tokens": True}}, "needs auth.token_keys"),
    ({"native": {"signed_tokens": "yes"}}, "true or false"),
    ({"native": {"tokens_env": True}}, "string or a list"),
    ({"native": "tokens"}, "auth.native must be a mapping"),
    ({"token_keys": [{"id": "a.b", "secret_env": "KEY_1"}]}, "token_keys\\[0\\].id"),
    ({"token_keys": [{"id": "k", "secret_env": "KEY_1"}, {"id": "k", "secret_env": "KEY_2"}]},
     "token_keys\\[1\\].id must be unique"),
    ({"token_keys": [{"id": "k"}]}, "exactly one of secret_env"),
    ({"token_keys": [{"id": "k", "secret_env": "KEY_1", "secret": KEY_2}]}, "exactly one"),
    ({"token_keys": {"id": "k"}}, "list"),
    ({"exotel": {"basic": [{"password_env": "EXOTEL_TOKEN"}]}}, "username"),
    ({"exotel": {"basic": [{"username": "a:b", "password_env": "EXOTEL_TOKEN"}]}}, "':'"),
    ({"exotel": {"basic": [{"username": "a", "pasword_env": "X"}]}}, "pasword_env"),
    ({"vonage": {"api_key": "abc"}}, "need signature_secrets_env"),
    ({"vonage": {"signature_secrets_env": "VONAGE_SIGNATURE_SECRET", "max_age_s": 0}},
     "max_age_s"),
    ({"public_url": "https://bot.example.com"}, "auth.public_url"),
    ({"public_url": "wss://bot.example.com/?x=1"}, "auth.public_url"),
    ({"clock_skew_s": -1}, "clock_skew_s"),
    ({"admin": {"token_env": "ADMIN"}}, "unknown key auth.admin.token_env"),
    ({"asterisk": {"trusted_networks": ["10.0.0.1/8"]}}, "auth.asterisk.trusted_networks"),
])
def test_bad_configs_raise_config_error(section: dict[str, Any], match: str) -> None:
    env = {**ENV, "EMPTY": "", "SHORT": "short"}
    with pytest.raises(ConfigError, match=match) as info:
        parse_auth_config(section, env=env, base_dir=Path())
    for secret in SECRETS:
        assert secret not in str(info.value)


def test_error_for_a_short_secret_does_not_show_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_auth_config({"native": {"tokens": "tooshort-secret"}}, env={}, base_dir=Path())
    assert "tooshort" not in str(info.value)


# ------------------------------------------------------------------ Twilio


def test_twilio_documented_example() -> None:
    # Twilio's request-validation example (docs/usage/security, twilio-python tests).
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", "12345",
                            params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_websocket_signature(config: AuthConfig) -> None:
    url = "wss://bot.example.com/twilio"
    ok = _check(config, "/twilio", ("X-Twilio-Signature", _twilio_sig(url, TWILIO_TOKEN)))
    assert (ok.allowed, ok.scheme, ok.endpoints) == (True, "twilio-signature",
                                                     frozenset({"twilio"}))
    rotated = _check(config, "/twilio", ("X-Twilio-Signature", _twilio_sig(url, TWILIO_TOKEN_2)))
    assert rotated.allowed
    wrong = _check(config, "/twilio", ("X-Twilio-Signature", _twilio_sig(url, "x" * 32)))
    assert (wrong.allowed, wrong.status, wrong.reason) == (False, 401,
                                                           "twilio: bad X-Twilio-Signature")
    missing = _check(config, "/twilio")
    assert (missing.status, missing.reason) == (401, "twilio: no credentials")
    assert missing.challenge == 'Bearer realm="voicebot"'


def test_twilio_signature_covers_query_and_scheme(config: AuthConfig) -> None:
    url = "wss://bot.example.com/twilio?scenario=bank_card"
    sig = ("X-Twilio-Signature", _twilio_sig(url, TWILIO_TOKEN))
    assert _check(config, "/twilio?scenario=bank_card", sig).allowed
    assert not _check(config, "/twilio?scenario=other", sig).allowed
    assert not _check(config, "/twilio", sig).allowed
    assert not _check(config, "/twilio?scenario=bank_card", sig, tls=False).allowed  # ws://


@pytest.mark.parametrize("signed_url, host", [
    ("wss://bot.example.com/twilio", "bot.example.com:443"),
    ("wss://bot.example.com:443/twilio", "bot.example.com"),
    ("wss://bot.example.com:8443/twilio", "bot.example.com:8443"),
    ("wss://bot.example.com/twilio", "bot.example.com:8443"),  # the validator drops any port
])
def test_twilio_port_variants(config: AuthConfig, signed_url: str, host: str) -> None:
    sig = ("X-Twilio-Signature", _twilio_sig(signed_url, TWILIO_TOKEN))
    assert _check(config, "/twilio", sig, host=host).allowed


def test_twilio_url_variants() -> None:
    assert twilio_url_variants("wss://h.example/x?a=1") == (
        "wss://h.example/x?a=1", "wss://h.example:443/x?a=1")
    assert twilio_url_variants("ws://h.example:8765/x") == (
        "ws://h.example:8765/x", "ws://h.example/x")
    assert twilio_url_variants("wss://[2001:db8::1]/t") == (
        "wss://[2001:db8::1]/t", "wss://[2001:db8::1]:443/t")
    assert set(twilio_url_variants("wss://h.example/")) == {
        "wss://h.example", "wss://h.example:443", "wss://h.example/", "wss://h.example:443/"}


def test_twilio_public_url_and_trusted_proxy() -> None:
    section = {"twilio": {"auth_tokens": TWILIO_TOKEN}, "trusted_proxies": ["10.0.0.0/8"]}
    behind = parse_auth_config(section, env={}, base_dir=Path())
    public = "wss://voice.example.com/twilio"
    sig = ("X-Twilio-Signature", _twilio_sig(public, TWILIO_TOKEN))
    forwarded = (("X-Forwarded-Host", "voice.example.com"), ("X-Forwarded-Proto", "https"))
    assert _check(behind, "/twilio", sig, *forwarded, host="app:8765", peer="10.1.1.1",
                  tls=False).allowed
    # the same headers from an untrusted peer are not believed
    assert not _check(behind, "/twilio", sig, *forwarded, host="app:8765", tls=False).allowed
    with_url = parse_auth_config({**section, "public_url": "wss://voice.example.com/vb/"},
                                 env={}, base_dir=Path())
    prefixed = ("X-Twilio-Signature",
                _twilio_sig("wss://voice.example.com/vb/twilio", TWILIO_TOKEN))
    assert _check(with_url, "/twilio", prefixed, host="app:8765", tls=False).allowed


# ------------------------------------------------------------------ Vonage


def _vonage_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iat": int(NOW) - 2, "jti": "a1b2", "iss": "Vonage",
                              "api_key": "abcd1234", "application_id": "app-1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_vonage_jwt(config: AuthConfig) -> None:
    ok = _check(config, "/vonage", _bearer(_jwt(_vonage_claims(), VONAGE_SECRET)))
    assert (ok.allowed, ok.scheme) == (True, "vonage-jwt")
    assert _check(config, "/vonage", _bearer(_jwt(_vonage_claims(exp=NOW + 60),
                                                   VONAGE_SECRET))).allowed


@pytest.mark.parametrize("token, reason", [
    (_jwt(_vonage_claims(), "another-secret-xxxxxxxx"), "bad JWT signature"),
    (_jwt(_vonage_claims(), VONAGE_SECRET, alg="none"), "JWT alg is not HS256"),
    (_jwt(_vonage_claims(), VONAGE_SECRET, alg="HS512"), "JWT alg is not HS256"),
    (_jwt(_vonage_claims(iat=NOW - 400), VONAGE_SECRET), "JWT expired"),
    (_jwt(_vonage_claims(exp=NOW - 60), VONAGE_SECRET), "JWT expired"),
    (_jwt(_vonage_claims(iat=NOW + 120), VONAGE_SECRET), "JWT not valid yet"),
    (_jwt(_vonage_claims(iat=None), VONAGE_SECRET), "JWT without a numeric iat"),
    (_jwt(_vonage_claims(iat="now"), VONAGE_SECRET), "JWT without a numeric iat"),
    (_jwt(_vonage_claims(api_key="other"), VONAGE_SECRET), "JWT api_key does not match"),
    ("not.a.jwt", "malformed JWT"),
    ("only-one-part", "malformed JWT"),
])
def test_vonage_jwt_refusals(config: AuthConfig, token: str, reason: str) -> None:
    decision = _check(config, "/vonage", _bearer(token))
    assert (decision.allowed, decision.status, decision.reason) == (False, 401,
                                                                    f"vonage: {reason}")


def test_vonage_jwt_within_skew_and_missing(config: AuthConfig) -> None:
    assert _check(config, "/vonage",
                  _bearer(_jwt(_vonage_claims(iat=NOW + 20), VONAGE_SECRET))).allowed
    assert _check(config, "/vonage").reason == "vonage: no credentials"


def test_vonage_custom_authorization_value() -> None:
    config = parse_auth_config({"vonage": {"tokens": NATIVE}}, env={}, base_dir=Path())
    assert _check(config, "/vonage", _bearer(NATIVE)).scheme == "bearer"
    assert not _check(config, "/vonage", _bearer(NATIVE_2)).allowed


# ------------------------------------------------------------------ Telnyx, Exotel, jambonz


def test_telnyx_stream_token_header_or_query(config: AuthConfig) -> None:
    assert _check(config, "/telnyx", _bearer(TELNYX)).scheme == "bearer"
    assert _check(config, f"/telnyx?token={TELNYX}").scheme == "query-token"
    assert _check(config, "/telnyx", _bearer("x" * 30)).reason == "telnyx: unknown bearer token"
    assert _check(config, "/telnyx?token=nope").reason == "telnyx: unknown token"
    assert _check(config, "/telnyx").reason == "telnyx: no credentials"


def test_exotel_basic_auth(config: AuthConfig) -> None:
    ok = _check(config, "/exotel", _basic(EXOTEL_USER, EXOTEL_TOKEN))
    assert (ok.allowed, ok.scheme) == (True, "basic")
    assert _check(config, "/exotel", _basic(EXOTEL_USER, "wrong")).reason == \
        "exotel: wrong Basic credentials"
    assert _check(config, "/exotel", _basic("someone", EXOTEL_TOKEN)).reason == \
        "exotel: wrong Basic credentials"
    assert _check(config, "/exotel", ("Authorization", "Basic !!!")).reason == \
        "exotel: malformed Basic credentials"
    assert _check(config, "/exotel", ("Authorization", "Basic " + base64.b64encode(
        b"no-colon").decode())).reason == "exotel: malformed Basic credentials"
    missing = _check(config, "/exotel")
    assert (missing.status, missing.challenge) == (401, 'Basic realm="voicebot"')
    assert _check(config, "/exotel", _bearer(EXOTEL_TOKEN)).reason == \
        "exotel: bearer not accepted"
    assert _check(config, "/exotel?token=abc").reason == "exotel: query token not accepted"


def test_jambonz_basic_or_signed_token(config: AuthConfig) -> None:
    assert _check(config, "/jambonz", _basic("jambonz", JAMBONZ_PASSWORD)).allowed
    token = mint_token("k1", KEY_1, "/jambonz", NOW + 60)
    assert _check(config, f"/jambonz?token={token}").scheme == "signed-token"
    assert _check(config, "/jambonz", ("Authorization", "Digest x=1")).reason == \
        "jambonz: this Authorization scheme not accepted"


def test_trusted_networks_and_anonymous_endpoints(config: AuthConfig) -> None:
    assert _check(config, "/asterisk", peer="10.20.3.4").scheme == "network"
    assert _check(config, "/asterisk").status == 401
    assert _check(config, "/freeswitch").scheme == "anonymous"  # nothing configured for it


# ------------------------------------------------------------------ native: bearer, tokens


def test_native_bearer_with_rotation(config: AuthConfig) -> None:
    assert _check(config, "/native", _bearer(NATIVE)).scheme == "bearer"
    assert _check(config, "/native", _bearer(NATIVE_2)).scheme == "bearer"
    assert _check(config, "/native", ("Authorization", f"bearer   {NATIVE} ")).allowed
    wrong = _check(config, "/native", _bearer(NATIVE[:-1] + "X"))
    assert (wrong.status, wrong.reason) == (401, "native: unknown bearer token")
    assert NATIVE[:-1] not in wrong.reason


def test_mint_token_format_is_documented() -> None:
    token = mint_token("k1", KEY_1, "/native", 1_700_000_000.9)
    mac = hmac.new(KEY_1.encode(), b"k1.1700000000./native", hashlib.sha256).digest()
    assert token == f"k1.1700000000.{_b64url(mac)}"
    assert mint_token("k1", Secret(KEY_1), "/native/", 1_700_000_000) == token
    with pytest.raises(ValueError, match="key id"):
        mint_token("bad.id", KEY_1, "/native", 1)


def test_signed_tokens(config: AuthConfig) -> None:
    token = mint_token("k1", KEY_1, "/native", NOW + 3600)
    assert _check(config, f"/native?token={token}").scheme == "signed-token"
    assert _check(config, f"/native/?token={token}").allowed  # same endpoint
    rotated = mint_token("k2", KEY_2, "/native", NOW + 3600)
    assert _check(config, f"/native?scenario=x&token={rotated}").allowed
    expiring = mint_token("k1", KEY_1, "/native", NOW - 10)
    assert _check(config, f"/native?token={expiring}").allowed  # within 30 s skew
    refusals = {
        mint_token("k1", KEY_1, "/native", NOW - 31): "token expired",
        mint_token("k1", KEY_1, "/jambonz", NOW + 60): "bad token signature",
        mint_token("k1", KEY_2, "/native", NOW + 60): "bad token signature",
        mint_token("k9", KEY_1, "/native", NOW + 60): "unknown token key id",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"): "bad token signature",
        token.replace(str(int(NOW + 3600)), str(int(NOW + 99999))): "bad token signature",
        "k1.soon.abc": "malformed signed token",
        "garbage": "malformed signed token",
    }
    for bad, reason in refusals.items():
        decision = _check(config, f"/native?token={bad}")
        assert (decision.status, decision.reason.split(" (")[0]) == (401, f"native: {reason}")


@given(st.integers(0, 200), st.characters(min_codepoint=33, max_codepoint=126))
def test_any_one_character_change_breaks_a_token(position: int, char: str) -> None:
    keys = [SigningKey("k1", Secret(KEY_1))]
    token = mint_token("k1", KEY_1, "/native", NOW + 60)
    position %= len(token)
    changed = token[:position] + char + token[position + 1:]
    if changed != token:
        assert verify_token(changed, keys, "/native", now_s=NOW) is not None


def test_verify_token_directly() -> None:
    keys = [SigningKey("k1", Secret(KEY_1))]
    token = mint_token("k1", KEY_1, "/native", 100)
    assert verify_token(token, keys, "/native", now_s=100) is None
    assert verify_token(token, keys, "/native", now_s=101) == "token expired"
    assert verify_token(token, keys, "/native", now_s=130, skew_s=30) is None
    assert verify_token("k1.²³.x", keys, "/native", now_s=0) == "malformed signed token"


# ------------------------------------------------------------------ paths, "/", auth: none


def test_endpoint_for_path() -> None:
    assert endpoint_for_path("/twilio") == "twilio"
    assert endpoint_for_path("/twilio/?x=1") == "twilio"
    assert endpoint_for_path("/") == DETECT
    assert endpoint_for_path("/metrics") is None
    assert endpoint_for_path("/twilio/extra") is None


def test_detect_path_accepts_any_endpoint_credential(config: AuthConfig) -> None:
    nothing = _check(config, "/")
    assert nothing.allowed and nothing.endpoints == frozenset({"freeswitch"})
    assert nothing.permits("freeswitch") and not nothing.permits("native")
    native = _check(config, "/", _bearer(NATIVE))
    assert native.permits("native") and not native.permits("twilio")
    twilio = _check(config, "/", ("X-Twilio-Signature",
                                  _twilio_sig("wss://bot.example.com/", TWILIO_TOKEN)))
    assert twilio.permits("twilio") and twilio.scheme == "twilio-signature"
    no_slash = ("X-Twilio-Signature", _twilio_sig("wss://bot.example.com", TWILIO_TOKEN))
    assert _check(config, "/", no_slash).permits("twilio")
    all_closed = parse_auth_config({name: {"tokens": NATIVE} for name in ENDPOINTS},
                                   env={}, base_dir=Path())
    refused = _check(all_closed, "/", _bearer("x" * 20))
    assert (refused.status, refused.reason) == (401, "twilio: unknown bearer token")
    assert _check(all_closed, "/").reason == "/: no credentials"
    wrong_native = _check(config, "/", _bearer("x" * 20))  # twilio, exotel: not accepted
    assert wrong_native.permits("freeswitch") and not wrong_native.permits("native")
    closed_by_network: dict[str, Any] = {
        name: {"trusted_networks": ["192.0.2.0/24"]} for name in ENDPOINTS}
    closed_by_network["twilio"] = SECTION["twilio"]
    closed_by_network["native"] = {"tokens": NATIVE}
    mixed = parse_auth_config(closed_by_network, env=ENV, base_dir=Path())
    refused_native = _check(mixed, "/", _bearer("x" * 20))
    assert (refused_native.status, refused_native.reason) == (401,
                                                              "native: unknown bearer token")


def test_auth_none_and_unknown_paths(config: AuthConfig) -> None:
    off = parse_auth_config("none", env={}, base_dir=Path())
    decision = _check(off, "/")
    assert decision.allowed and decision.endpoints == frozenset(ENDPOINTS)
    assert _check(off, "/twilio").scheme == "none"
    other = _check(config, "/metrics")
    assert other.allowed and other.endpoints == frozenset() and not other.permits("native")


def test_network_refusals_come_before_authentication() -> None:
    config = parse_auth_config({
        "native": {"tokens": NATIVE}, "allowed_networks": ["203.0.113.0/24"],
        "rate_limit": {"max_new_connections_per_s": 1, "burst": 2}}, env={}, base_dir=Path())
    limiter = make_rate_limiter(config)
    assert limiter is not None
    outsider = check_handshake(_request("/native", _bearer(NATIVE), peer="198.51.100.1"),
                               config, now_s=NOW, limiter=limiter)
    assert (outsider.status, outsider.reason) == (403, "source address not allowed")
    evil = check_handshake(_request("/native", _bearer(NATIVE), ("Origin", "https://evil.example")),
                           config, now_s=NOW, limiter=limiter)
    assert (evil.status, evil.reason) == (403, "origin not allowed")
    statuses = [check_handshake(_request("/native", _bearer("x" * 20)), config, now_s=NOW,
                                limiter=limiter).status for _ in range(3)]
    assert statuses == [401, 401, 429]  # failed attempts count too
    assert make_rate_limiter(AuthConfig()) is None


def test_from_target_keeps_every_header_value() -> None:
    headers = Headers()
    headers["Host"] = "bot.example.com"
    headers["X-Forwarded-For"] = "198.51.100.1"
    headers["X-Forwarded-For"] = "10.0.0.2"
    request = HandshakeRequest.from_target("/native?token=a&b=c", headers, peer_ip="10.0.0.1")
    assert (request.path, request.query) == ("/native", "token=a&b=c")
    assert request.header_values("x-forwarded-for") == ["198.51.100.1", "10.0.0.2"]
    assert request.header("HOST") == "bot.example.com"
    assert HandshakeRequest.from_target("/", {"Host": "h"}, peer_ip="").header("host") == "h"


# ------------------------------------------------------------------ exposure, admin


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_exposure_loopback_without_auth_is_fine(host: str) -> None:
    assert check_exposure(host, AuthConfig()) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", None, "192.168.1.5", "bot.example.com"])
def test_exposure_refuses_open_public_listener(host: str | None) -> None:
    with pytest.raises(ConfigError, match=r"auth\.native\.tokens_env.*auth: none"):
        check_exposure(host, AuthConfig())


def test_exposure_warnings(config: AuthConfig) -> None:
    off = parse_auth_config("none", env={}, base_dir=Path())
    assert "auth: none" in (check_exposure("0.0.0.0", off) or "")
    assert "auth: none" in (check_exposure("127.0.0.1", off) or "")
    assert check_exposure("0.0.0.0", config) == \
        "endpoints open without authentication on 0.0.0.0: /freeswitch"
    closed = parse_auth_config({name: {"tokens": NATIVE} for name in ENDPOINTS}, env={},
                               base_dir=Path())
    assert check_exposure("0.0.0.0", closed) is None


def test_admin_token(config: AuthConfig) -> None:
    assert check_admin(f"Bearer {ADMIN}", config)
    assert not check_admin(f"Bearer {ADMIN}x", config)
    assert not check_admin("Basic " + base64.b64encode(f"a:{ADMIN}".encode()).decode(), config)
    assert not check_admin(None, config)
    assert not check_admin(f"Bearer {ADMIN}", AuthConfig())

"""Handshake authentication policy: the ``auth:`` section, paths, networks, exposure, admin.

The per-provider credential schemes and signed tokens: test_auth_schemes.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.datastructures import Headers

from server.auth import (
    DETECT,
    ENDPOINTS,
    AuthConfig,
    HandshakeRequest,
    check_admin,
    check_exposure,
    check_handshake,
    endpoint_for_path,
    make_rate_limiter,
    parse_auth_config,
)
from server.auth_schemes import Secret
from tests.unit.auth_helpers import (
    ADMIN,
    ENV,
    KEY_2,
    NATIVE,
    NATIVE_2,
    NOW,
    SECRETS,
    SECTION,
    TWILIO_TOKEN,
    bearer,
    check,
    request,
    twilio_sig,
)
from voicebot.errors import ConfigError

__all__: list[str] = []


@pytest.fixture(scope="module")
def config() -> AuthConfig:
    return parse_auth_config(SECTION, env=ENV, base_dir=Path("/nonexistent"))


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


# ------------------------------------------------------------------ paths, "/", auth: none


def test_endpoint_for_path() -> None:
    assert endpoint_for_path("/twilio") == "twilio"
    assert endpoint_for_path("/twilio/?x=1") == "twilio"
    assert endpoint_for_path("/") == DETECT
    assert endpoint_for_path("/metrics") is None
    assert endpoint_for_path("/twilio/extra") is None


def test_detect_path_accepts_any_endpoint_credential(config: AuthConfig) -> None:
    nothing = check(config, "/")
    assert nothing.allowed and nothing.endpoints == frozenset({"freeswitch"})
    assert nothing.permits("freeswitch") and not nothing.permits("native")
    native = check(config, "/", bearer(NATIVE))
    assert native.permits("native") and not native.permits("twilio")
    twilio = check(config, "/", ("X-Twilio-Signature",
                                 twilio_sig("wss://bot.example.com/", TWILIO_TOKEN)))
    assert twilio.permits("twilio") and twilio.scheme == "twilio-signature"
    no_slash = ("X-Twilio-Signature", twilio_sig("wss://bot.example.com", TWILIO_TOKEN))
    assert check(config, "/", no_slash).permits("twilio")
    all_closed = parse_auth_config({name: {"tokens": NATIVE} for name in ENDPOINTS},
                                   env={}, base_dir=Path())
    refused = check(all_closed, "/", bearer("x" * 20))
    assert (refused.status, refused.reason) == (401, "twilio: unknown bearer token")
    assert check(all_closed, "/").reason == "/: no credentials"
    wrong_native = check(config, "/", bearer("x" * 20))  # twilio, exotel: not accepted
    assert wrong_native.permits("freeswitch") and not wrong_native.permits("native")
    closed_by_network: dict[str, Any] = {
        name: {"trusted_networks": ["192.0.2.0/24"]} for name in ENDPOINTS}
    closed_by_network["twilio"] = SECTION["twilio"]
    closed_by_network["native"] = {"tokens": NATIVE}
    mixed = parse_auth_config(closed_by_network, env=ENV, base_dir=Path())
    refused_native = check(mixed, "/", bearer("x" * 20))
    assert (refused_native.status, refused_native.reason) == (401,
                                                              "native: unknown bearer token")


def test_auth_none_and_unknown_paths(config: AuthConfig) -> None:
    off = parse_auth_config("none", env={}, base_dir=Path())
    decision = check(off, "/")
    assert decision.allowed and decision.endpoints == frozenset(ENDPOINTS)
    assert check(off, "/twilio").scheme == "none"
    other = check(config, "/metrics")
    assert other.allowed and other.endpoints == frozenset() and not other.permits("native")


def test_network_refusals_come_before_authentication() -> None:
    config = parse_auth_config({
        "native": {"tokens": NATIVE}, "allowed_networks": ["203.0.113.0/24"],
        "rate_limit": {"max_new_connections_per_s": 1, "burst": 2}}, env={}, base_dir=Path())
    limiter = make_rate_limiter(config)
    assert limiter is not None
    outsider = check_handshake(request("/native", bearer(NATIVE), peer="198.51.100.1"),
                               config, now_s=NOW, limiter=limiter)
    assert (outsider.status, outsider.reason) == (403, "source address not allowed")
    evil = check_handshake(request("/native", bearer(NATIVE), ("Origin", "https://evil.example")),
                           config, now_s=NOW, limiter=limiter)
    assert (evil.status, evil.reason) == (403, "origin not allowed")
    statuses = [check_handshake(request("/native", bearer("x" * 20)), config, now_s=NOW,
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

"""Authentication at the handshake, against a real server: every endpoint's scheme
refuses missing or wrong credentials with 401 (one log line) and serves good ones;
Origin, source networks and the per-source rate limit; /metrics behind the admin token;
secure by default; TLS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from server.auth_schemes import mint_token
from tests.integration.conftest import REPO, ServerProcess, free_port, http_status, running_server
from voicebot.telephony.dialects import DIALECTS

__all__: list[str] = []

pytestmark = pytest.mark.slow

SECRETS = {
    "VB_KEY1": "key-one-0123456789abcdef", "VB_KEY2": "key-two-0123456789abcdef",
    "TW_TOKEN": "twilio-auth-token-0123456789", "TW_TOKEN2": "twilio-secondary-0123456789",
    "VONAGE_SECRET": "vonage-signature-secret-0123", "TELNYX_TOKEN": "telnyx-stream-0123456789",
    "EXOTEL_PW": "exotel-password-0123456789", "JZ_PW": "jambonz-password-0123456789",
    "FS_TOKEN": "freeswitch-token-0123456789", "PBX_PW": "asterisk-password-0123456789",
    "NATIVE_TOKEN": "native-token-new-0123456789", "NATIVE_TOKEN_OLD": "native-token-old-012345",
    "ADMIN_TOKEN": "admin-token-0123456789abcdef",
}
CONFIG = """
auth:
  trusted_proxies: [127.0.0.0/8]
  allowed_networks: [127.0.0.0/8, 10.0.0.0/8]
  allowed_origins: [https://console.example.com]
  rate_limit: {max_new_connections_per_s: 0.5, burst: 3}
  token_keys: [{id: k1, secret_env: VB_KEY1}, {id: k2, secret_env: VB_KEY2}]
  twilio: {auth_tokens_env: [TW_TOKEN, TW_TOKEN2]}
  vonage: {signature_secrets_env: VONAGE_SECRET}
  telnyx: {tokens_env: TELNYX_TOKEN}
  exotel: {basic: [{username: exo, password_env: EXOTEL_PW}]}
  jambonz: {basic: [{username: jz, password_env: JZ_PW}]}
  freeswitch: {tokens_env: FS_TOKEN}
  asterisk: {basic: [{username: pbx, password_env: PBX_PW}]}
  native: {tokens_env: [NATIVE_TOKEN, NATIVE_TOKEN_OLD], signed_tokens: true}
  admin: {tokens_env: ADMIN_TOKEN}
"""
_SOURCES = (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in itertools.count(1))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("auth")
    (folder / "config.yaml").write_text(CONFIG)
    with running_server(folder, "--stack", "lite", "--cpus", "0", "--dialogs-per-core", "4",
                        "--config",
                        str(folder / "config.yaml"), env=SECRETS) as process:
        yield process


def _source() -> dict[str, str]:
    """A fresh source address (behind the trusted loopback proxy): the per-source rate
    limit of this server counts each test's connections apart."""
    return {"X-Forwarded-For": next(_SOURCES)}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _twilio_signature(url: str, token: str) -> str:
    """Twilio's documented algorithm: base64(HMAC-SHA1(auth token, full URL [+ sorted POST
    params; a websocket upgrade has none]))."""
    digest = hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _vonage_jwt(secret: str, *, issued_at: float) -> str:
    def part(obj: dict[str, object]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = part({"alg": "HS256", "typ": "JWT"})
    body = part({"iat": int(issued_at), "jti": "j-1", "api_key": "abcd1234"})
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def _status(url: str, headers: dict[str, str], **kwargs: object) -> int:
    try:
        async with connect(url, additional_headers=headers, **kwargs):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def _served(ws: ClientConnection, provider: str) -> None:
    """The call runs: its opening messages bring the greeting back."""
    dialect = DIALECTS[provider]("auth-test-call")
    for frame in dialect.opening(None):
        await ws.send(frame)
    async with asyncio.timeout(15):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes) or "media" in message or "audio" in message \
                    or "ready" in message:
                return


async def _check_endpoint(server: ServerProcess, provider: str, path: str,
                          good: dict[str, str], bad: list[dict[str, str]],
                          query: str = "") -> None:
    url = f"{server.url}{path}{query}"
    subprotocols = [DIALECTS[provider].subprotocol] if DIALECTS[provider].subprotocol else None
    for headers in [{}, *bad]:
        status = await _status(url, headers | _source(), subprotocols=subprotocols)
        assert status == 401, (provider, headers, status)
    async with connect(url, additional_headers=good | _source(),
                       subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        await _served(ws, provider)


async def test_twilio_signature_is_checked(server: ServerProcess) -> None:
    url = f"{server.url}/twilio?tenant=acme"  # Twilio signs the URL it was given, query included
    good = _twilio_signature(url, SECRETS["TW_TOKEN"])
    rotated = _twilio_signature(url, SECRETS["TW_TOKEN2"])
    wrong = _twilio_signature(url, "not-the-auth-token-0123456789")
    other_url = _twilio_signature(f"{server.url}/twilio?tenant=evil", SECRETS["TW_TOKEN"])
    await _check_endpoint(server, "twilio", "/twilio", {"X-Twilio-Signature": good},
                          [{"X-Twilio-Signature": wrong}, {"X-Twilio-Signature": other_url},
                           {"X-Twilio-Signature": "garbage"}], query="?tenant=acme")
    async with connect(url, additional_headers={"X-Twilio-Signature": rotated} | _source()) as ws:
        await _served(ws, "twilio")


async def test_vonage_jwt_is_checked(server: ServerProcess) -> None:
    now = time.time()
    good = _vonage_jwt(SECRETS["VONAGE_SECRET"], issued_at=now)
    await _check_endpoint(server, "vonage", "/vonage", {"Authorization": f"Bearer {good}"}, [
        {"Authorization": f"Bearer {_vonage_jwt('wrong-secret-0123456789', issued_at=now)}"},
        {"Authorization": f"Bearer {_vonage_jwt(SECRETS['VONAGE_SECRET'], issued_at=now - 3600)}"},
        {"Authorization": "Bearer not.a.jwt"},
    ])


async def test_token_and_basic_endpoints(server: ServerProcess) -> None:
    await _check_endpoint(server, "telnyx", "/telnyx",
                          {"Authorization": f"Bearer {SECRETS['TELNYX_TOKEN']}"},
                          [{"Authorization": "Bearer wrong-token-0123456789"}])
    async with connect(f"{server.url}/telnyx?token={SECRETS['TELNYX_TOKEN']}",
                       additional_headers=_source()) as ws:  # the token in the stream URL
        await _served(ws, "telnyx")
    await _check_endpoint(server, "exotel", "/exotel",
                          {"Authorization": _basic("exo", SECRETS["EXOTEL_PW"])},
                          [{"Authorization": _basic("exo", "wrong")},
                           {"Authorization": _basic("other", SECRETS["EXOTEL_PW"])}])
    await _check_endpoint(server, "jambonz", "/jambonz",
                          {"Authorization": _basic("jz", SECRETS["JZ_PW"])},
                          [{"Authorization": _basic("jz", "wrong")}])
    await _check_endpoint(server, "freeswitch", "/freeswitch",
                          {"Authorization": f"Bearer {SECRETS['FS_TOKEN']}"},
                          [{"Authorization": f"Bearer {SECRETS['NATIVE_TOKEN']}"}])
    await _check_endpoint(server, "asterisk", "/asterisk",
                          {"Authorization": _basic("pbx", SECRETS["PBX_PW"])},
                          [{"Authorization": _basic("pbx", "nope")}])


async def test_native_bearer_rotation_and_signed_query_tokens(server: ServerProcess) -> None:
    await _check_endpoint(server, "native", "/native",
                          {"Authorization": f"Bearer {SECRETS['NATIVE_TOKEN']}"},
                          [{"Authorization": "Bearer wrong-0123456789"},
                           {"Authorization": SECRETS["NATIVE_TOKEN"]}])
    old = {"Authorization": f"Bearer {SECRETS['NATIVE_TOKEN_OLD']}"} | _source()
    assert await _status(f"{server.url}/native", old) == 101  # the rotated-out key still works
    now = time.time()
    for key_id, key in (("k1", SECRETS["VB_KEY1"]), ("k2", SECRETS["VB_KEY2"])):
        token = mint_token(key_id, key, "/native", now + 60)
        async with connect(f"{server.url}/native?token={token}",
                           additional_headers=_source()) as ws:
            await _served(ws, "native")
    refused = [mint_token("k1", SECRETS["VB_KEY1"], "/native", now - 600),  # expired
               mint_token("k1", SECRETS["VB_KEY1"], "/twilio", now + 60),  # another path
               mint_token("k1", SECRETS["VB_KEY2"], "/native", now + 60),  # wrong key
               mint_token("k9", SECRETS["VB_KEY1"], "/native", now + 60)]  # unknown key id
    for token in refused:
        assert await _status(f"{server.url}/native?token={token}", _source()) == 401, token


async def test_root_path_serves_only_the_provider_the_credentials_are_for(
    server: ServerProcess,
) -> None:
    native = {"Authorization": f"Bearer {SECRETS['NATIVE_TOKEN']}"}
    async with connect(f"{server.url}/", additional_headers=native | _source()) as ws:
        await _served(ws, "native")
    async with connect(f"{server.url}/", additional_headers=native | _source()) as ws:
        for frame in DIALECTS["twilio"]("CA-not-native").opening(None):
            await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert ws.close_code == 4401
    assert await _status(f"{server.url}/", _source()) == 401


async def test_origin_networks_and_rate_limit(server: ServerProcess) -> None:
    token = {"Authorization": f"Bearer {SECRETS['NATIVE_TOKEN']}"}
    url = f"{server.url}/native"
    assert await _status(url, token | _source(), origin="https://evil.example") == 403
    assert await _status(url, token | _source(), origin="https://console.example.com") == 101
    host = server.url.removeprefix("ws://")
    assert await _status(url, token | _source(), origin=f"http://{host}") == 101  # same origin
    assert await _status(url, token | {"X-Forwarded-For": "203.0.113.9"}) == 403
    # An untrusted hop cannot pick its address: the right-most untrusted one counts.
    assert await _status(url, token | {"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}) == 403
    source = {"X-Forwarded-For": "10.200.0.1"}
    statuses = [await _status(url, token | source) for _ in range(5)]
    assert statuses[:3] == [101, 101, 101] and statuses[3:] == [429, 429], statuses
    assert await _status(url, token | _source()) == 101  # other sources are not limited
    log = server.log_path.read_text()
    assert "refused /native from 10.200.0.1: HTTP 429" in log
    assert "refused /native from 203.0.113.9: HTTP 403" in log
    assert not any(secret in log for secret in SECRETS.values())


def test_metrics_need_the_admin_token(server: ServerProcess) -> None:
    assert http_status(f"{server.http}/metrics") == 401
    assert http_status(f"{server.http}/metrics",
                       headers={"Authorization": "Bearer wrong-0123456789"}) == 401
    assert http_status(f"{server.http}/metrics",
                       headers={"Authorization": f"Bearer {SECRETS['ADMIN_TOKEN']}"}) == 200
    assert http_status(f"{server.http}/healthz") == 200  # orchestrators' probes stay open
    assert http_status(f"{server.http}/readyz") == 200


def _serve_briefly(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    return subprocess.run([sys.executable, "-m", "server", "serve", *args], cwd=REPO,
                          env=environment | env, capture_output=True, text=True, timeout=120)


def test_a_public_bind_without_authentication_refuses_to_start() -> None:
    done = _serve_briefly("--stack", "lite", "--host", "0.0.0.0", "--port", str(free_port()),
                          env={})
    assert done.returncode == 2
    assert "auth" in done.stderr and "refusing to serve 0.0.0.0" in done.stderr, done.stderr


def test_auth_none_serves_a_public_bind_with_a_warning(tmp_path: Path) -> None:
    with running_server(tmp_path, "--stack", "lite", "--host", "0.0.0.0", "--cpus", "0",
                        env={"VOICEBOT_AUTH": "none"}) as process:
        assert http_status(f"{process.http}/readyz") == 200
    log = process.log_path.read_text()
    assert "authentication is off (auth: none)" in log


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_tls_serves_wss_and_the_admin_port_serves_metrics(
    tmp_path: Path, tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    admin = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"tls_cert_file: {cert}\ntls_key_file: {key}\nadmin_port: {admin}\n")
    with running_server(tmp_path, "--stack", "lite", "--cpus", "0", "--config", str(config),
                        scheme="https") as process:
        context = ssl.create_default_context(cafile=str(cert))
        async with connect(f"{process.url}/native", ssl=context) as ws:
            await _served(ws, "native")
        assert process.url.startswith("wss://")
        with pytest.raises((OSError, InvalidHandshake)):  # no plain websocket on a TLS port
            async with connect(process.url.replace("wss://", "ws://") + "/native",
                               open_timeout=5):
                pass
        assert http_status(f"{process.http}/metrics") == 404  # on the admin port only
        assert http_status(f"http://127.0.0.1:{admin}/metrics") == 200
        assert http_status(f"http://127.0.0.1:{admin}/readyz") == 200
        assert http_status(f"http://127.0.0.1:{admin}/native") == 404


async def test_the_call_client_sends_its_token(server: ServerProcess) -> None:
    from server.client import CallerTurn, CallOptions, place_call, prepare_turns

    options = CallOptions(url=f"{server.url}/native", token=SECRETS["NATIVE_TOKEN"])
    prepared = await asyncio.to_thread(prepare_turns, [CallerTurn("text", "goodbye")], options)
    reports, _ = await place_call(prepared, options)
    assert reports[-1].end == "hangup:completed", reports


async def test_the_simulator_signs_as_twilio_does(server: ServerProcess) -> None:
    from server.client import CallerTurn, CallOptions, prepare_turns
    from server.simulate import SimOptions, simulate

    prepared = await asyncio.to_thread(
        prepare_turns, [CallerTurn("text", "goodbye")], CallOptions(encoding="mulaw",
                                                                    sample_rate_hz=8000))
    options = SimOptions(provider="twilio", url=server.url,
                         twilio_auth_token=SECRETS["TW_TOKEN"])
    result = await simulate(prepared, options)
    assert result.reports[-1].end == "closed:1000:hangup", result.reports

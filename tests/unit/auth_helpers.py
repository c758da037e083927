"""Shared data and helpers of the handshake-authentication tests.

The secrets, their environment and the ``auth:`` section every test starts from,
a handshake builder and a checker that asserts no decision shows a secret, and
independent re-implementations of the documented algorithms (not the code under
test) used by both test_auth_policy.py and test_auth_schemes.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from server.auth import AuthConfig, Decision, HandshakeRequest, check_handshake

__all__ = [
    "ADMIN",
    "ENV",
    "EXOTEL_TOKEN",
    "EXOTEL_USER",
    "JAMBONZ_PASSWORD",
    "KEY_1",
    "KEY_2",
    "NATIVE",
    "NATIVE_2",
    "NOW",
    "SECRETS",
    "SECTION",
    "TELNYX",
    "TWILIO_TOKEN",
    "TWILIO_TOKEN_2",
    "VONAGE_SECRET",
    "bearer",
    "check",
    "request",
    "twilio_sig",
]

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


def request(target: str, *headers: tuple[str, str], host: str = "bot.example.com",
            peer: str = "203.0.113.7", tls: bool = True) -> HandshakeRequest:
    return HandshakeRequest.from_target(target, [("Host", host), *headers], peer_ip=peer,
                                        tls=tls)


def check(config: AuthConfig, target: str, *headers: tuple[str, str], now_s: float = NOW,
          **kw: Any) -> Decision:
    decision = check_handshake(request(target, *headers, **kw), config, now_s=now_s)
    for secret in SECRETS:  # no decision ever shows a secret
        assert secret not in repr(decision)
    return decision


# Independent re-implementations of the documented algorithms (not the code under test).

def twilio_sig(url: str, token: str) -> str:
    return base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def bearer(token: str) -> tuple[str, str]:
    return "Authorization", f"Bearer {token}"

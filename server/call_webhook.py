"""The end-of-call webhook: a signed JSON POST per finished call, retried, in the background.

:meth:`CallEndNotifier.notify` takes a snapshot of the payload (its JSON text) and
returns at once; a background task POSTs it through the server's
:class:`~.webhook.WebhookClient` (same egress policy and keep-alive pool as the
dialog webhooks).  At most ``max_in_flight`` deliveries run at once; beyond that a
call's notification is dropped, logged and counted (``dropped``).

Retries: a connection error, a timeout, 429 and 5xx are retried, at most
``max_attempts`` attempts in all, after ``backoff_s * 2**(attempt-1)`` seconds with
equal jitter (half fixed, half random), or after ``Retry-After`` seconds when the
answer gives them; either capped at ``max_backoff_s``.  Any other answer (2xx: done;
3xx after the redirects, other 4xx, refused by the egress policy) is final.  The
``X-Voicebot-Delivery`` id is the same for every attempt: a receiver that got the
first attempt but whose answer was lost can recognize the retry.

Signature (when a secret is configured)::

    X-Voicebot-Timestamp: 1718000000
    X-Voicebot-Signature: sha256=<hex HMAC-SHA256(secret, b"1718000000." + raw body)>

A receiver recomputes the HMAC over the timestamp header, a dot and the *raw* request
body (before any JSON parsing), compares it in constant time and rejects a timestamp
more than 5 minutes from its clock (a replay): :func:`verify_signature` does exactly
that.  Logs name the host and the status, never the payload nor a header value.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from voicebot.errors import ConfigError

from .egress import EgressPolicy, parse_headers
from .webhook import WebhookClient, WebhookReply

__all__ = [
    "CALL_WEBHOOK_KEYS",
    "CallEndNotifier",
    "CallWebhookConfig",
    "parse_call_webhook",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

CALL_WEBHOOK_KEYS = ("url", "secret_env", "timeout_s", "max_attempts", "backoff_s",
                     "max_backoff_s", "max_in_flight", "headers", "headers_env")
"""The keys of the ``call_webhook:`` section."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallWebhookConfig:
    """Where and how the end-of-call webhook is delivered."""

    url: str
    secret: str | None = field(default=None, repr=False)  # the HMAC key
    timeout_s: float = 5.0  # per attempt
    max_attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_in_flight: int = 100
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ConfigError(f"call_webhook.url must be an http(s) URL, not {self.url!r}")
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError("call_webhook: timeout_s must be positive, the backoffs not "
                              "negative")
        if self.max_attempts < 1 or self.max_in_flight < 1:
            raise ConfigError("call_webhook: max_attempts and max_in_flight must be >= 1")


def parse_call_webhook(data: Mapping[str, Any] | None, env: Mapping[str, str], *,
                       policy: EgressPolicy | None = None) -> CallWebhookConfig | None:
    """The ``call_webhook:`` section (None when absent: no end-of-call webhook).  The
    secret is read from the environment variable named by ``secret_env``; ``policy``
    (the ``webhooks:`` one), when given, must allow the URL."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ConfigError("call_webhook must be a mapping")
    if "secret" in data:
        raise ConfigError("call_webhook.secret: put the secret in an environment variable "
                          "and name it with call_webhook.secret_env")
    if unknown := sorted(set(data) - set(CALL_WEBHOOK_KEYS)):
        raise ConfigError(f"unknown key call_webhook.{unknown[0]}")
    url = data.get("url")
    if not isinstance(url, str):
        raise ConfigError("call_webhook.url is required (an http(s) URL)")
    secret: str | None = None
    if (name := data.get("secret_env")) is not None:
        if not isinstance(name, str) or not env.get(name):
            raise ConfigError(f"call_webhook.secret_env: environment variable {name} is "
                              "not set")
        secret = env[name]
    numbers: dict[str, Any] = {}
    for key, kind in (("timeout_s", float), ("backoff_s", float), ("max_backoff_s", float),
                      ("max_attempts", int), ("max_in_flight", int)):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                    kind is int and not isinstance(value, int)):
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(f"call_webhook.{key} must be {what}")
            numbers[key] = kind(value)
    config = CallWebhookConfig(url=url, secret=secret,
                               headers=parse_headers(data, env, section="call_webhook"),
                               **numbers)
    if policy is not None and (reason := policy.check_url(url)) is not None:
        raise ConfigError(f"call_webhook.url is refused by the webhooks policy: {reason}")
    return config


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Voicebot-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *,
                     now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: ``header`` (``X-Voicebot-Signature``) is the HMAC of
    ``timestamp`` (``X-Voicebot-Timestamp``) and the raw ``body``, and the timestamp is
    within ``tolerance_s`` of ``now`` (the receiver's clock, Unix seconds)."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > tolerance_s:  # a replay, or a skewed clock
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.encode())


def _retryable(reply: WebhookReply) -> bool:
    if reply.status is None:
        return not reply.refused  # connection error, timeout: yes; the policy: no
    return reply.status == 429 or 500 <= reply.status <= 599


class CallEndNotifier:
    """Delivers end-of-call payloads in the background (see the module doc)."""

    def __init__(
        self, client: WebhookClient, config: CallWebhookConfig, *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._host = urlsplit(config.url).hostname or "?"
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def notify(self, payload: Mapping[str, Any]) -> None:
        """Schedule the delivery of ``payload`` (serialized now); never blocks nor raises.
        Call it on the event loop (e.g. where the call's websocket handler ends)."""
        if self._closing or len(self._tasks) >= self._config.max_in_flight:
            self.dropped += 1
            log.warning("call webhook to %s: %s; notification dropped (%d so far)",
                        self._host, "closing" if self._closing else
                        f"{len(self._tasks)} deliveries in flight", self.dropped)
            return
        try:
            body = json.dumps(payload, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            self.dropped += 1
            log.error("call webhook to %s: payload is not JSON (%s); dropped",
                      self._host, type(exc).__name__)
            return
        task = asyncio.get_running_loop().create_task(self._deliver(body),
                                                      name="call-webhook")
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call webhook to %s: delivery crashed", self._host, exc_info=exc)

    def backoff_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """The pause after failed attempt ``attempt`` (1-based)."""
        if retry_after_s is not None:
            return min(retry_after_s, self._config.max_backoff_s)
        full = self._config.backoff_s * 2.0 ** (attempt - 1)
        return min(full / 2 + self._rng.random() * full / 2, self._config.max_backoff_s)

    async def _deliver(self, body: bytes) -> None:
        delivery = uuid.uuid4().hex
        reply = WebhookReply()
        for attempt in range(1, self._config.max_attempts + 1):
            timestamp = str(int(self._clock()))
            headers = {**self._config.headers, "X-Voicebot-Delivery": delivery,
                       "X-Voicebot-Timestamp": timestamp}
            if self._config.secret is not None:
                headers["X-Voicebot-Signature"] = sign(self._config.secret, timestamp, body)
            reply = await self._client.post(self._config.url, body, headers=headers,
                                            timeout_s=self._config.timeout_s)
            if reply.status is not None and 200 <= reply.status < 300:
                self.delivered += 1
                return
            if not _retryable(reply) or attempt == self._config.max_attempts:
                break
            await self._sleep(self.backoff_s(attempt, reply.retry_after_s))
        self.failed += 1
        outcome = f"HTTP {reply.status}" if reply.status is not None else reply.error
        log.warning("call webhook to %s failed after %d attempt(s): %s", self._host,
                    attempt, outcome)

    async def close(self, timeout_s: float) -> None:
        """Refuse new notifications, wait up to ``timeout_s`` for the deliveries in
        flight, then cancel what is left."""
        self._closing = True
        tasks = set(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("call webhook to %s: %d deliveries cancelled at shutdown",
                        self._host, len(pending))

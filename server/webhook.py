"""A small asyncio HTTP/1.1 client for dialog webhooks (POST JSON, read JSON).

It runs on the event loop (no thread, no blocking call) and never raises:
it returns ``(data, None)`` or ``(None, error message)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["post_json"]

_MAX_BODY_BYTES = 1 << 20


async def _exchange(url: str, body: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context() if secure else None
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        length: int | None = None
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = bytearray()
            while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
                data += await reader.readexactly(size)
                await reader.readline()
                if len(data) > _MAX_BODY_BYTES:
                    raise ValueError("response too large")
            return status, bytes(data)
        if length is not None:
            if length > _MAX_BODY_BYTES:
                raise ValueError("response too large")
            return status, await reader.readexactly(length)
        return status, await reader.read(_MAX_BODY_BYTES)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()




async def post_json(
    url: str, payload: Mapping[str, Any], *, timeout_s: float
) -> tuple[dict[str, Any] | None, str | None]:
    """POST ``payload`` to ``url``; the JSON object answered, or an error message."""
    body = json.dumps(payload).encode()
    try:
        async with asyncio.timeout(timeout_s):
            status, data = await _exchange(url, body)
    except TimeoutError:
        return None, f"no answer within {timeout_s:.1f} s"
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        return None, f"request failed: {exc}"
    if not 200 <= status < 300:
        return None, f"HTTP {status}"
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return None, "answer is not JSON"
    if not isinstance(answer, dict):
        return None, "answer is not a JSON object"
    return answer, None

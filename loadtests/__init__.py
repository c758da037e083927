"""Locust load tests for voicebot: real-time callers over the native protocol or a
telephony provider's websocket, turn latency and density measured at the caller.

Pure of the server: only voicebot's pure parts (protocol, codecs, provider
dialects) are imported here.  ``locustfile.py`` is what Locust runs;
``caller.py`` places one call (threads, or greenlets under Locust's gevent);
``run.py`` is behind ``make load`` and ``make density``.
"""

__all__: list[str] = []

"""voicebot: a CPU voice-robot serving stack.

The library is sans-I/O at its core: :class:`voicebot.session.Session` is a pure
state machine fed with client messages and engine results; it returns the
commands to run and the messages to send.  ``server/`` is the composition root
that owns sockets, threads and configuration.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

"""The exception tree of voicebot.

Every error voicebot raises on purpose derives from :class:`VoicebotError`::

    VoicebotError
    ├── ConfigError              bad configuration value or file
    ├── ProtocolError            a client message that breaks the wire protocol
    │   └── UnsupportedAudioError  encoding / sample rate we do not serve
    ├── ScenarioError            an invalid scenario file (names file, line, problem)
    ├── EngineError              an engine failed; third-party errors are chained
    │   ├── EngineUnavailableError  optional runtime or model missing
    │   └── ModelBuildError      building a model into the cache failed
    └── DialogError              a dialog action failed at run time (e.g. webhook)

Adapters translate third-party exceptions with ``raise EngineError(...) from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DialogError",
    "EngineError",
    "EngineUnavailableError",
    "ModelBuildError",
    "ProtocolError",
    "ScenarioError",
    "UnsupportedAudioError",
    "VoicebotError",
]


class VoicebotError(Exception):
    """Root of every error voicebot raises on purpose."""


class ConfigError(VoicebotError):
    """A configuration value or file is invalid."""


class ProtocolError(VoicebotError):
    """A client message breaks the wire protocol.

    ``close_code`` is the websocket close code the server answers with.
    """

    def __init__(self, message: str, *, close_code: int = 4400) -> None:
        super().__init__(message)
        self.close_code = close_code


class UnsupportedAudioError(ProtocolError):
    """The client asked for an audio encoding or rate voicebot does not serve."""

    def __init__(self, message: str) -> None:
        super().__init__(message, close_code=4415)


class ScenarioError(VoicebotError):
    """A scenario file is invalid; the message names the file, line and problem."""


class EngineError(VoicebotError):
    """An engine (ASR, NLU, TTS, VAD) failed."""


class EngineUnavailableError(EngineError):
    """An engine's optional runtime or model is not installed."""


class ModelBuildError(EngineError):
    """Building a model into the models cache failed."""


class DialogError(VoicebotError):
    """A dialog action failed at run time."""

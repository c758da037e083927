"""Voice activity detection: the Silero detector and the pure endpointing state machine."""

__all__: list[str] = []

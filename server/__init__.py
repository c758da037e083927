"""The composition root: configuration, logging, CLI, sockets and threads."""

__all__: list[str] = []

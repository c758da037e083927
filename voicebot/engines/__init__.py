"""Engines behind small Protocols, and the lazy registry that names them."""

__all__: list[str] = []

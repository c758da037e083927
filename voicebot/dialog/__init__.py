"""Scripted contact-center dialogs: the scenario format and its pure interpreter."""

__all__: list[str] = []

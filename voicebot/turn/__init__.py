"""End-of-turn detection: the turn-model Protocol, its verdict and its input features.

Pure (numpy only): the ONNX Runtime adapter is :mod:`voicebot.engines.smart_turn`.
"""

__all__: list[str] = []

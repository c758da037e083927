"""Audio plumbing: wire codecs (PCM16, G.711), resampling and fixed-size framing."""

__all__: list[str] = []

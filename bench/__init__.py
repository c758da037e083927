"""Measurement tools of the repository, outside the server: ``python -m bench``.

Benchmarks (turn latency and accuracy against a running server, engines pinned one
by one, accuracy on real human speech, Whisper on recorded digits), the speech
data they use (Debian's Asterisk prompts and LibriVox clips) and the load tests'
caller audio.  They drive the server from outside (``python -m server`` processes,
websocket calls) and reuse its pure parts; the server never imports them, and they
are not in the wheel (a repository tool, like ``loadtests/``).
"""

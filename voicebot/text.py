"""Text helpers shared by the session and the engines."""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

# A sentence ends at . ! ? (or runs of them) followed by white space; "1,250.40"
# and "e.g." inside a word do not split because no space follows the dot.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Split a prompt into sentences to synthesize one after another."""
    parts = (p.strip() for p in _BOUNDARY.split(text.strip()))
    return [p for p in parts if p]

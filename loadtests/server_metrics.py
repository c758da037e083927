"""What the server says about itself at ``/metrics``: CPU time and where turn time goes.

The load generator reads these before and after a run (or a density step):
the server's CPU use is the CPU time its processes gained over the wall time,
which works whether or not the server runs on this machine.
"""

from __future__ import annotations

import math
import re
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Snapshot", "http_base", "parse", "scrape"]

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$', re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def http_base(url: str) -> str:
    """``ws://host:port/x`` → ``http://host:port``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU seconds of the server's processes and the turn-part histogram sums."""

    cpu_s: float
    parts: dict[str, tuple[float, float]]  # part -> (sum seconds, count)

    def cpu_percent_since(self, earlier: Snapshot, wall_s: float) -> float:
        """CPU use between two snapshots, in % of one core."""
        if wall_s <= 0 or math.isnan(self.cpu_s) or math.isnan(earlier.cpu_s):
            return math.nan
        return 100.0 * (self.cpu_s - earlier.cpu_s) / wall_s

    def part_means_ms_since(self, earlier: Snapshot) -> dict[str, float]:
        """Mean milliseconds of each turn part between two snapshots."""
        out = {}
        for part, (total, count) in self.parts.items():
            total0, count0 = earlier.parts.get(part, (0.0, 0.0))
            if count > count0:
                out[part] = 1000.0 * (total - total0) / (count - count0)
        return out


def parse(text: str) -> Snapshot:
    cpu = 0.0
    seen_cpu = False
    parts: dict[str, list[float]] = {}
    for name, labels, value in _LINE.findall(text):
        tags = dict(_LABEL.findall(labels))
        if name == "voicebot_cpu_seconds" and value != "NaN":
            cpu += float(value)
            seen_cpu = True
        elif name in ("voicebot_turn_part_seconds_sum", "voicebot_turn_part_seconds_count"):
            slot = parts.setdefault(tags.get("part", "?"), [0.0, 0.0])
            slot[0 if name.endswith("_sum") else 1] = float(value)
    return Snapshot(cpu if seen_cpu else math.nan,
                    {part: (v[0], v[1]) for part, v in parts.items()})


def scrape(url: str, *, timeout_s: float = 5.0) -> Snapshot:
    """The server's ``/metrics`` now; NaN CPU when it cannot be read."""
    try:
        with urllib.request.urlopen(f"{http_base(url)}/metrics", timeout=timeout_s) as response:
            return parse(response.read().decode())
    except (OSError, ValueError):
        return Snapshot(math.nan, {})

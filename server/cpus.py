"""The CPUs this process may really use: its affinity, cut down to its cgroup's CPU quota.

``os.sched_getaffinity`` ignores a container's CPU limit: a 64-core host running a
container limited to 2 CPUs reports 64 CPUs, and one cell per CPU (~0.5 GB each, all
throttled to 2 CPUs' worth of time) would start. The limit is the CFS quota of the
process's cgroup or of one of its ancestors (the tightest wins):

* cgroup v2: ``cpu.max`` -- ``"max 100000"`` is no limit, ``"200000 100000"`` 2 CPUs --
  in the process's cgroup (``/proc/self/cgroup`` line ``0::/path``) under the cgroup2
  mount (``/proc/self/mountinfo``, normally ``/sys/fs/cgroup``);
* cgroup v1: ``cpu.cfs_quota_us`` (``-1``: none) / ``cpu.cfs_period_us`` in the cgroup of
  the ``cpu`` controller (``N:cpu,cpuacct:/path``) under its mount.

The quota is rounded down to whole CPUs, at least one; the first that many CPUs of the
affinity are chosen. Every reader takes the file-system root (tests use fake cgroup
trees); a missing or unreadable file means "no limit", never an error. An explicit
``cpus:`` setting or ``--cpus`` flag still wins (server/config.py).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "CgroupMount",
    "CpuChoice",
    "CpuQuota",
    "choose_cpus",
    "default_cpus",
    "detect_cpus",
    "format_cpus",
    "parse_cfs_quota",
    "parse_cpu_max",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "read_quota",
]

_log = logging.getLogger(__name__)

_DEFAULT_V2_MOUNT = PurePosixPath("/sys/fs/cgroup")
_DEFAULT_V1_MOUNTS = (PurePosixPath("/sys/fs/cgroup/cpu,cpuacct"),
                      PurePosixPath("/sys/fs/cgroup/cpu"))
_DEFAULT_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuQuota:
    """A CFS bandwidth limit: ``quota_us`` of CPU time every ``period_us``."""

    quota_us: int
    period_us: int
    source: str
    """``cgroup v2`` or ``cgroup v1``."""
    path: str
    """The file that set it, as this process sees it."""

    @property
    def cpus(self) -> float:
        return self.quota_us / self.period_us

    @property
    def whole_cpus(self) -> int:
        """Rounded down, at least one."""
        return max(1, self.quota_us // self.period_us)


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupMount:
    """A cgroup hierarchy's mount: the cgroup ``root`` it shows, at ``mountpoint``."""

    root: PurePosixPath
    mountpoint: PurePosixPath


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuChoice:
    """The CPUs chosen, and why."""

    cpus: tuple[int, ...]
    affinity: tuple[int, ...]
    quota_cpus: float | None
    """The cgroup CPU quota in CPUs (None: no quota)."""
    source: str
    """What decided: ``cgroup v2``, ``cgroup v1`` (the quota cut the affinity) or
    ``affinity``."""
    quota_path: str | None = None

    def describe(self) -> str:
        """E.g. ``CPUs 0,1 of affinity 0-63: cgroup v2 quota 2.0 CPUs (/sys/...)``."""
        cpus = format_cpus(self.cpus)
        if self.quota_cpus is None:
            return f"CPUs {cpus}: the process's affinity (no cgroup CPU quota)"
        quota = f"quota {self.quota_cpus:g} CPU{'' if self.quota_cpus == 1 else 's'}"
        if self.source != "affinity":
            return (f"CPUs {cpus} of affinity {format_cpus(self.affinity)}: {self.source} "
                    f"{quota} ({self.quota_path})")
        return f"CPUs {cpus}: the process's affinity (cgroup CPU {quota} does not cut it)"


def format_cpus(cpus: Iterable[int]) -> str:
    """``(0, 1, 2, 3, 6)`` → ``"0-3,6"`` (the taskset list format)."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def parse_cpu_max(text: str) -> tuple[int, int] | None:
    """cgroup v2 ``cpu.max``: ``"200000 100000"`` → ``(200000, 100000)``; ``"max 100000"``
    or anything malformed → None (no limit)."""
    parts = text.split()
    if not 1 <= len(parts) <= 2 or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) == 2 else _DEFAULT_PERIOD_US
    except ValueError:
        return None
    return (quota, period) if quota > 0 and period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> tuple[int, int] | None:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``: ``-1`` (no limit) or
    anything malformed → None."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return (quota, period) if quota > 0 and period > 0 else None


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """``/proc/self/cgroup`` → (the cgroup v2 path, the v1 ``cpu`` controller's path)."""
    v2: str | None = None
    v1: str | None = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep or not path.startswith("/"):
            continue
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> tuple[CgroupMount | None, CgroupMount | None]:
    """``/proc/self/mountinfo`` → (the cgroup2 mount, the v1 mount with the ``cpu``
    controller)."""
    v2: CgroupMount | None = None
    v1: CgroupMount | None = None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 4:
            continue
        fstype, options = fields[dash + 1], fields[dash + 3].split(",")
        mount = CgroupMount(root=PurePosixPath(_unescape(fields[3])),
                            mountpoint=PurePosixPath(_unescape(fields[4])))
        if fstype == "cgroup2" and v2 is None:
            v2 = mount
        elif fstype == "cgroup" and "cpu" in options and v1 is None:
            v1 = mount
    return v2, v1


def _read(root: Path, path: PurePosixPath) -> str | None:
    try:
        return (root / path.relative_to("/")).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _log.debug("cannot read %s under %s: %s", path, root, exc)
        return None


def _cgroup_dirs(mount: CgroupMount, cgroup: str | None) -> list[PurePosixPath]:
    """The process's cgroup folder under ``mount`` and its ancestors up to the mount."""
    own = mount.mountpoint
    if cgroup is not None and ".." not in PurePosixPath(cgroup).parts:
        try:  # without a cgroup namespace the mount shows a subtree (root /docker/ID)
            own = mount.mountpoint / PurePosixPath(cgroup).relative_to(mount.root)
        except ValueError:  # outside the mounted subtree: the mount is the closest
            pass
    dirs = [own]
    while dirs[-1] != mount.mountpoint and dirs[-1].is_relative_to(mount.mountpoint):
        dirs.append(dirs[-1].parent)
    return dirs


def read_quota(root: Path = Path("/")) -> CpuQuota | None:
    """The tightest CPU quota on this process's cgroup and its ancestors, v2 and v1, with
    the files read under ``root``; None when there is none."""
    v2_path, v1_path = parse_proc_cgroup(_read(root, PurePosixPath("/proc/self/cgroup")) or "")
    mountinfo = _read(root, PurePosixPath("/proc/self/mountinfo"))
    v2_mount, v1_mount = parse_mountinfo(mountinfo or "")
    if v2_mount is None and mountinfo is None:
        v2_mount = CgroupMount(root=PurePosixPath("/"), mountpoint=_DEFAULT_V2_MOUNT)
    if v1_mount is None and mountinfo is None:
        v1_mount = next((CgroupMount(root=PurePosixPath("/"), mountpoint=m)
                         for m in _DEFAULT_V1_MOUNTS if (root / m.relative_to("/")).is_dir()),
                        None)
    quotas: list[CpuQuota] = []
    if v2_mount is not None:
        for folder in _cgroup_dirs(v2_mount, v2_path):
            parsed = parse_cpu_max(_read(root, folder / "cpu.max") or "")
            if parsed is not None:
                quotas.append(CpuQuota(quota_us=parsed[0], period_us=parsed[1],
                                       source="cgroup v2", path=str(folder / "cpu.max")))
    if v1_mount is not None:
        for folder in _cgroup_dirs(v1_mount, v1_path):
            parsed = parse_cfs_quota(_read(root, folder / "cpu.cfs_quota_us") or "",
                                     _read(root, folder / "cpu.cfs_period_us") or "")
            if parsed is not None:
                quotas.append(CpuQuota(quota_us=parsed[0], period_us=parsed[1],
                                       source="cgroup v1", path=str(folder / "cpu.cfs_quota_us")))
    return min(quotas, key=lambda q: q.cpus, default=None)


def choose_cpus(affinity: Iterable[int], quota: CpuQuota | None) -> CpuChoice:
    """The first ``quota.whole_cpus`` CPUs of ``affinity`` (all of it without a quota)."""
    allowed = tuple(sorted(set(affinity)))
    if not allowed:
        raise ValueError("the affinity holds no CPU")
    if quota is None:
        return CpuChoice(cpus=allowed, affinity=allowed, quota_cpus=None, source="affinity")
    if quota.whole_cpus >= len(allowed):
        return CpuChoice(cpus=allowed, affinity=allowed, quota_cpus=quota.cpus,
                         source="affinity", quota_path=quota.path)
    return CpuChoice(cpus=allowed[:quota.whole_cpus], affinity=allowed, quota_cpus=quota.cpus,
                     source=quota.source, quota_path=quota.path)


def detect_cpus(*, root: Path = Path("/"), affinity: Iterable[int] | None = None) -> CpuChoice:
    """This process's affinity (or ``affinity``) cut down to the cgroup CPU quota read
    under ``root``."""
    return choose_cpus(os.sched_getaffinity(0) if affinity is None else affinity,
                       read_quota(root))


def default_cpus() -> tuple[int, ...]:
    """``cpus`` when the configuration sets none (server/config.py)."""
    return detect_cpus().cpus

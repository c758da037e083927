"""The CPUs a server uses by default: its affinity cut down to the cgroup CPU quota,
read from fake cgroup v1 / v2 trees under tmp_path (server/cpus.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.config import ServerConfig, load_config
from server.cpus import (
    CpuQuota,
    choose_cpus,
    default_cpus,
    detect_cpus,
    format_cpus,
    parse_cfs_quota,
    parse_cpu_max,
    parse_mountinfo,
    parse_proc_cgroup,
    read_quota,
)

__all__: list[str] = []

HOST_64 = range(64)
V2_MOUNT = ("30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 "
            "cgroup2 rw,nsdelegate,memory_recursiveprot\n")
V1_MOUNTS = (
    "31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
)
V1_CGROUP = "12:memory:/{path}\n11:cpu,cpuacct:/{path}\n1:name=systemd:/{path}\n0::/{path}\n"


def fake_root(tmp_path: Path, *, proc_cgroup: str | None, mountinfo: str | None,
              files: Mapping[str, str]) -> Path:
    """A file system root with /proc/self/{cgroup,mountinfo} and cgroup ``files``."""
    root = tmp_path / "root"
    proc = root / "proc" / "self"
    proc.mkdir(parents=True)
    if proc_cgroup is not None:
        (proc / "cgroup").write_text(proc_cgroup)
    if mountinfo is not None:
        (proc / "mountinfo").write_text(mountinfo)
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def v2_root(tmp_path: Path, cpu_max: str, *, cgroup: str = "/") -> Path:
    folder = "/sys/fs/cgroup" + cgroup.rstrip("/")
    return fake_root(tmp_path, proc_cgroup=f"0::{cgroup}\n", mountinfo=V2_MOUNT,
                     files={f"{folder}/cpu.max": cpu_max})


@pytest.mark.parametrize(("cpu_max", "cpus"), [
    ("200000 100000\n", (0, 1)),            # 2 CPUs: two cells' worth, not 64
    ("250000 100000\n", (0, 1)),            # 2.5 rounded down
    ("50000 100000\n", (0,)),               # 0.5: still one
    ("max 100000\n", tuple(HOST_64)),       # no limit
    ("6400000 100000\n", tuple(HOST_64)),   # more than the affinity: the affinity
])
def test_a_cgroup_v2_quota_cuts_the_affinity(tmp_path: Path, cpu_max: str,
                                             cpus: tuple[int, ...]) -> None:
    choice = detect_cpus(root=v2_root(tmp_path, cpu_max), affinity=HOST_64)
    assert choice.cpus == cpus
    assert choice.affinity == tuple(HOST_64)
    assert choice.source == ("cgroup v2" if len(cpus) < 64 else "affinity")


def test_the_choice_says_why(tmp_path: Path) -> None:
    choice = detect_cpus(root=v2_root(tmp_path, "200000 100000"), affinity=HOST_64)
    assert choice.quota_cpus == 2.0
    assert choice.describe() == ("CPUs 0-1 of affinity 0-63: cgroup v2 quota 2 CPUs "
                                 "(/sys/fs/cgroup/cpu.max)")
    unlimited = detect_cpus(root=tmp_path / "nothing", affinity=[3, 1, 2])
    assert unlimited.describe() == "CPUs 1-3: the process's affinity (no cgroup CPU quota)"
    assert unlimited.quota_cpus is None and unlimited.source == "affinity"
    loose = choose_cpus([0, 1], CpuQuota(quota_us=400000, period_us=100000, source="cgroup v1",
                                         path="/q"))
    assert loose.describe() == ("CPUs 0-1: the process's affinity (cgroup CPU quota 4 CPUs "
                                "does not cut it)")
    one = choose_cpus([0, 1], CpuQuota(quota_us=100000, period_us=100000, source="cgroup v1",
                                       path="/q"))
    assert one.describe() == "CPUs 0 of affinity 0-1: cgroup v1 quota 1 CPU (/q)"


def test_nested_v2_limits_the_tightest_wins(tmp_path: Path) -> None:
    pod = "/sys/fs/cgroup/kubepods.slice/pod1"
    root = fake_root(tmp_path, proc_cgroup="0::/kubepods.slice/pod1/ctr\n", mountinfo=V2_MOUNT,
                     files={"/sys/fs/cgroup/cpu.max": "max 100000",
                            "/sys/fs/cgroup/kubepods.slice/cpu.max": "max 100000",
                            f"{pod}/cpu.max": "300000 100000",
                            f"{pod}/ctr/cpu.max": "max 100000"})
    choice = detect_cpus(root=root, affinity=HOST_64)
    assert (choice.cpus, choice.quota_path) == ((0, 1, 2), f"{pod}/cpu.max")
    (root / pod.lstrip("/") / "ctr" / "cpu.max").write_text("100000 100000\n")
    choice = detect_cpus(root=root, affinity=HOST_64)
    assert (choice.cpus, choice.quota_path) == ((0,), f"{pod}/ctr/cpu.max")


def test_a_mount_showing_a_subtree_without_a_cgroup_namespace(tmp_path: Path) -> None:
    """Docker without a cgroup namespace: /proc/self/cgroup names /docker/ID, which is
    the root the mount shows at /sys/fs/cgroup."""
    mountinfo = V2_MOUNT.replace(" / /sys/fs/cgroup ", " /docker/abc /sys/fs/cgroup ")
    root = fake_root(tmp_path, proc_cgroup="0::/docker/abc\n", mountinfo=mountinfo,
                     files={"/sys/fs/cgroup/cpu.max": "200000 100000"})
    assert detect_cpus(root=root, affinity=HOST_64).cpus == (0, 1)


@pytest.mark.parametrize(("quota", "cpus"), [("150000", (0,)), ("400000", (0, 1, 2, 3)),
                                             ("-1", tuple(HOST_64))])
def test_cgroup_v1_cfs_quota(tmp_path: Path, quota: str, cpus: tuple[int, ...]) -> None:
    folder = "/sys/fs/cgroup/cpu,cpuacct/docker/abc"
    root = fake_root(tmp_path, proc_cgroup=V1_CGROUP.format(path="docker/abc"),
                     mountinfo=V1_MOUNTS, files={f"{folder}/cpu.cfs_quota_us": f"{quota}\n",
                                                 f"{folder}/cpu.cfs_period_us": "100000\n"})
    choice = detect_cpus(root=root, affinity=HOST_64)
    assert choice.cpus == cpus
    if quota != "-1":
        assert (choice.source, choice.quota_path) == ("cgroup v1",
                                                      f"{folder}/cpu.cfs_quota_us")


def test_v1_at_the_usual_place_when_mountinfo_is_unreadable(tmp_path: Path) -> None:
    folder = "/sys/fs/cgroup/cpu,cpuacct"
    root = fake_root(tmp_path, proc_cgroup=None, mountinfo=None,
                     files={f"{folder}/cpu.cfs_quota_us": "200000",
                            f"{folder}/cpu.cfs_period_us": "100000"})
    assert detect_cpus(root=root, affinity=HOST_64).cpus == (0, 1)


def test_a_hybrid_host_the_tighter_of_v1_and_v2(tmp_path: Path) -> None:
    """cpu in v1 (separate mount, as on this CI machine) and cgroup2 at .../unified."""
    mountinfo = (V1_MOUNTS.replace("cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,"
                                   "cpuacct", "cpu rw,nosuid - cgroup cgroup rw,cpu")
                 + V2_MOUNT.replace("/sys/fs/cgroup", "/sys/fs/cgroup/unified"))
    root = fake_root(tmp_path, proc_cgroup="3:cpu:/\n0::/\n", mountinfo=mountinfo,
                     files={"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "300000",
                            "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
                            "/sys/fs/cgroup/unified/cpu.max": "500000 100000"})
    choice = detect_cpus(root=root, affinity=HOST_64)
    assert (choice.cpus, choice.source) == ((0, 1, 2), "cgroup v1")


@pytest.mark.parametrize("garbage", ["", "banana", "max", "0 100000", "-5 100000",
                                     "200000 0", "200000 100000 7", "2e5 1e5", "\x00\xff"])
def test_garbage_files_mean_no_limit(tmp_path: Path, garbage: str) -> None:
    root = fake_root(tmp_path, proc_cgroup=f"0::/a\n{garbage}\n", mountinfo=V2_MOUNT + garbage,
                     files={"/sys/fs/cgroup/a/cpu.max": garbage,
                            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": garbage})
    assert detect_cpus(root=root, affinity=HOST_64).cpus == tuple(HOST_64)


def test_unreadable_files_mean_no_limit(tmp_path: Path) -> None:
    root = fake_root(tmp_path, proc_cgroup="0::/\n", mountinfo=V2_MOUNT, files={})
    (root / "sys/fs/cgroup/cpu.max").mkdir(parents=True)  # reading it fails
    (root / "sys/fs/cgroup/a").write_bytes(b"\xff\xfe")
    assert read_quota(root) is None
    assert read_quota(tmp_path / "no-such-root") is None


def test_the_proc_files_parsers() -> None:
    assert parse_proc_cgroup(V1_CGROUP.format(path="x/y")) == ("/x/y", "/x/y")
    assert parse_proc_cgroup("2:cpuset:/a\n0::/b\n") == ("/b", None)
    assert parse_proc_cgroup("nonsense\n::\n") == (None, None)
    escaped = V2_MOUNT.replace("/sys/fs/cgroup", "/sys/fs/my\\040cgroup")
    v2, v1 = parse_mountinfo(escaped)
    assert v1 is None and v2 is not None and str(v2.mountpoint) == "/sys/fs/my cgroup"
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cfs_quota("50000", "100000") == (50000, 100000)


def test_this_machine_does_not_crash_and_stays_in_its_affinity() -> None:
    choice = detect_cpus()
    assert set(choice.cpus) <= os.sched_getaffinity(0) and choice.cpus


def test_a_real_cgroup_v1_quota() -> None:
    """A child cgroup of this process's own, with a 1-CPU quota, and a process in it: on a
    machine where cgroup v1's cpu controller is mounted and writable (root; else skipped)."""
    _, mount = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    _, own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    if mount is None or own is None or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("no cgroup v1 cpu controller here, or a single CPU")
    folder = Path(mount.mountpoint) / PurePosixPath(own).relative_to(mount.root) / (
        f"voicebot-test-{os.getpid()}")
    try:
        folder.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup: {exc}")
    try:
        (folder / "cpu.cfs_quota_us").write_text("100000")  # 1 CPU every 100 ms period
        probe = ("import json; from server.cpus import detect_cpus; c = detect_cpus(); "
                 "print(json.dumps([c.cpus, c.source, c.quota_path]))")
        done = subprocess.run(
            ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$1" -c "$2"', str(folder),
             sys.executable, probe], capture_output=True, text=True, timeout=60, check=True,
            cwd=Path(__file__).resolve().parents[2])
        cpus, source, path = json.loads(done.stdout)
        assert (len(cpus), source, path) == (1, "cgroup v1", str(folder / "cpu.cfs_quota_us"))
    finally:
        folder.rmdir()


def test_the_servers_default_cpus_are_the_detected_ones() -> None:
    [field] = [f for f in dataclasses.fields(ServerConfig) if f.name == "cpus"]
    assert field.default_factory is default_cpus
    assert load_config(env={}).cpus == detect_cpus().cpus == ServerConfig().cpus
    # An explicit setting still wins.
    first = min(os.sched_getaffinity(0))
    assert load_config(env={}, overrides={"cpus": str(first)}).cpus == (first,)


def test_format_cpus() -> None:
    assert format_cpus([6, 0, 1, 2, 3, 9, 10]) == "0-3,6,9-10"
    assert format_cpus([5]) == "5"


@given(quota=st.integers(1, 10**8), period=st.integers(1, 10**7))
def test_cpu_max_round_trip(quota: int, period: int) -> None:
    assert parse_cpu_max(f"{quota} {period}\n") == (quota, period)
    assert parse_cpu_max(f"max {period}\n") is None


@given(st.text())
def test_cpu_max_never_raises(text: str) -> None:
    parsed = parse_cpu_max(text)
    assert parsed is None or (parsed[0] > 0 and parsed[1] > 0)


@given(affinity=st.sets(st.integers(0, 1023), min_size=1),
       quota=st.integers(1, 10**7), period=st.integers(1000, 10**6))
def test_choose_cpus_is_whole_rounded_down_and_at_least_one(affinity: set[int], quota: int,
                                                            period: int) -> None:
    choice = choose_cpus(affinity, CpuQuota(quota_us=quota, period_us=period,
                                            source="cgroup v2", path="/cpu.max"))
    assert len(choice.cpus) == min(len(affinity), max(1, quota // period))
    assert choice.cpus == tuple(sorted(affinity))[:len(choice.cpus)]

"""Admission control with a controllable clock."""

from __future__ import annotations

import pytest

from server.admission import Admission, AdmissionConfig, LatencyWindow
from voicebot.errors import ConfigError

__all__: list[str] = []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_capacity_is_dialogs_per_core_times_cores() -> None:
    admission = Admission(AdmissionConfig(dialogs_per_core=2, cores=1))
    for _ in range(2):
        assert admission.refusal() is None
        admission.admit()
    assert admission.refusal() == "full"
    admission.release()
    assert admission.refusal() is None
    assert AdmissionConfig(dialogs_per_core=3, cores=4).capacity == 12


def test_latency_rule_refuses_below_capacity_and_recovers() -> None:
    clock = Clock()
    admission = Admission(AdmissionConfig(dialogs_per_core=4, slo_p95_ms=1500, window_s=30,
                                          min_turns=5), clock=clock)
    admission.admit()
    for ms in (600, 700, 800, 2500):
        admission.record_turn(ms)
    assert admission.refusal() is None  # too few turns to judge
    admission.record_turn(2600)
    assert admission.refusal() == "slo"  # p95 of 5 is the worst: 2600 > 1500
    clock.now += 31  # the slow turns leave the window
    assert admission.refusal() is None
    for _ in range(20):
        admission.record_turn(700)
    admission.record_turn(5000)  # one slow turn in 21 stays under the p95
    assert admission.refusal() is None


def test_a_cell_with_no_live_dialog_always_admits() -> None:
    """A few slow turns of one call must not refuse every call for a minute after it
    ended (seen as 'refused a call: slo (0 live)')."""
    clock = Clock()
    admission = Admission(AdmissionConfig(slo_p95_ms=1500, min_turns=5), clock=clock)
    cell = admission.admit()
    for _ in range(6):
        admission.record_turn(2400, cell)
    assert admission.refusal() == "slo"  # under load, late: refuse
    admission.release(cell)
    assert admission.active == 0 and admission.refusal() is None
    cell = admission.admit()  # a new load starts with a clean window
    admission.record_turn(700, cell)
    assert admission.refusal() is None and admission.p95(cell) == 700


def test_draining_refuses_everything() -> None:
    admission = Admission(AdmissionConfig())
    admission.draining = True
    assert admission.refusal() == "draining"


def test_window_p95() -> None:
    clock = Clock()
    window = LatencyWindow(window_s=10, clock=clock)
    assert window.p95() is None
    for ms in range(1, 101):
        window.add(float(ms))
    assert window.p95() == 95.0
    clock.now += 11
    assert window.p95() is None and len(window) == 0


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        AdmissionConfig(dialogs_per_core=0)
    with pytest.raises(ConfigError):
        AdmissionConfig(slo_p95_ms=0)


def test_per_cell_placement_skips_a_late_cell_and_says_why_it_refuses() -> None:
    clock = Clock()
    admission = Admission(AdmissionConfig(dialogs_per_core=2, cores=2, min_turns=5),
                          clock=clock)
    assert [admission.admit() for _ in range(2)] == ["0", "1"]  # least loaded first
    for _ in range(5):
        admission.record_turn(3000, "0")  # cell 0 is late
    assert admission.open_cells() == ["1"]
    assert admission.admit() == "1"  # cell 1 still takes dialogs
    assert admission.refusal() == "slo"  # cell 1 full, cell 0 late: refuse, reason slo
    admission.admit("0")  # (an admission that raced in)
    assert admission.refusal() == "full"
    admission.release("1")
    assert admission.open_cells() == ["1"] and admission.refusal() is None
    admission.release("0")
    assert admission.open_cells() == ["1"]  # one dialog left on cell 0: still late
    admission.release("0")  # cell 0 empties: late under load no more
    assert admission.open_cells() == ["0", "1"]


def test_a_dead_cell_takes_its_capacity_away() -> None:
    admission = Admission(AdmissionConfig(dialogs_per_core=1, cores=2))
    admission.set_cells(["1"])  # cell 0 died
    assert admission.cores == 1
    assert admission.admit() == "1"
    assert admission.refusal() == "full"
    admission.set_cells(["0", "1"])  # restarted
    assert admission.refusal() is None and admission.admit() == "0"

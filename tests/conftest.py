"""Shared fixtures: the demo scenario and a fake-engine session driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voicebot.dialog.loader import load_scenario
from voicebot.dialog.scenario import Scenario
from voicebot.jobs import CallJobs
from voicebot.session import Session, SessionConfig
from voicebot.testing import SessionDriver, fake_engines

REPO = Path(__file__).resolve().parent.parent
BANK_CARD = REPO / "scenarios" / "bank_card.yaml"


@pytest.fixture(scope="session")
def bank_card() -> Scenario:
    return load_scenario(BANK_CARD)


@pytest.fixture
def make_driver(bank_card: Scenario) -> Callable[..., SessionDriver]:
    """``make_driver("I lost my card", "yes")``: a fake-engine call with scripted ASR."""

    def make(*transcripts: str, **config: Any) -> SessionDriver:
        engines, _ = fake_engines(*transcripts)
        engines.prepare(bank_card)
        session = Session(scenarios={bank_card.name: bank_card}, config=SessionConfig(**config))
        return SessionDriver(session, CallJobs(engines))

    return make

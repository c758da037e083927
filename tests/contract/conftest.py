"""Fixtures of the engine contract suite (tests/contract).

Each module of this folder states one engine Protocol's contract
(:mod:`voicebot.engines.base`) as tests and runs them against every
implementation: the deterministic fakes of :mod:`voicebot.testing` and each real
adapter (built once per module, skipped when its model is missing; see
:mod:`tests.contract.support`), so a fake cannot drift from the engines it
stands in for.  Speech clips come from espeak-ng, resampled to 16 kHz.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from tests.contract.support import OTHER_SPOKEN, SCENARIO, SPOKEN, clip
from voicebot.dialog.loader import load_scenario
from voicebot.engines.base import Pcm


@pytest.fixture(scope="session")
def speech() -> Pcm:
    """About 1.7 s at 16 kHz: ``SPOKEN``, 250 ms of silence either side."""
    return clip(SPOKEN)


@pytest.fixture(scope="session")
def other_speech() -> Pcm:
    """About 1.3 s at 16 kHz: ``OTHER_SPOKEN``, 250 ms of silence either side."""
    return clip(OTHER_SPOKEN)


@pytest.fixture(scope="session")
def intents() -> Mapping[str, Sequence[str]]:
    """The bank_card scenario's intents and examples, as ``EngineSet.prepare`` trains them."""
    return load_scenario(SCENARIO).intents


@pytest.fixture(scope="session")
def asr_domains() -> Mapping[str, Sequence[str]]:
    """The bank_card scenario's ASR domains and phrases, as ``EngineSet.prepare`` gives them."""
    return load_scenario(SCENARIO).asr_domains()

"""bench/nlu_fetch.py: the public NLU data sets are fetched pinned, verified and cached.

A local HTTP server (the ``hub`` fixture of modelhub_helpers.py) stands in for
raw.githubusercontent.com, which this machine cannot reach; the download itself is
voicebot.modelhub's. A wrong sha256 is refused and leaves nothing behind.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bench.nlu_data import load_banking77, load_clinc
from bench.nlu_fetch import BANKING77, CLINC150, PinnedFile, PinnedSet, ensure_files
from tests.unit import modelhub_helpers
from tests.unit.modelhub_helpers import _FileServer, _sha
from voicebot.modelhub.download import ChecksumError, NetworkError

hub = modelhub_helpers.hub  # the fixture: a local file server

CLINC = json.dumps({
    "train": [["what is my balance", "balance"], ["block my card", "freeze_account"]],
    "test": [["how much money do i have", "balance"]],
    "oos_train": [["tell me a joke", "oos"]], "oos_test": [["who won the match", "oos"]],
}).encode()
TRAIN = b"text,category\nwhere is my card,card_arrival\nmy card is lost,lost_or_stolen_card\n"
TEST = b"text,category\nhas my card been sent,card_arrival\n"


def _pinned(hub: _FileServer, clinc: bytes = CLINC, sha: str | None = None) -> PinnedSet:
    hub.files.update({"/clinc/data/data_full.json": clinc, "/bank/train.csv": TRAIN,
                      "/bank/test.csv": TEST})
    return PinnedSet(name="test", licence="CC-BY-4.0", base_url=hub.url("/"), files=(
        PinnedFile(path="clinc.json", remote="clinc/data/data_full.json",
                   size_bytes=len(clinc), sha256=sha or _sha(clinc)),
        PinnedFile(path="banking77/train.csv", remote="bank/train.csv",
                   size_bytes=len(TRAIN), sha256=_sha(TRAIN)),
        PinnedFile(path="banking77/test.csv", remote="bank/test.csv",
                   size_bytes=len(TEST), sha256=_sha(TEST)),
    ))


def test_fetches_verifies_and_loads(hub: _FileServer, tmp_path: Path) -> None:
    root = ensure_files(_pinned(hub), tmp_path)
    assert (root / "clinc.json").read_bytes() == CLINC
    clinc = load_clinc(root / "clinc.json")
    assert clinc.train[0] == ("what is my balance", "balance")
    assert clinc.oos_test == ("who won the match",)
    banking = load_banking77(root / "banking77")
    assert banking.test == (("has my card been sent", "card_arrival"),)
    assert len(hub.requests) == 3


def test_verified_files_are_not_fetched_again(hub: _FileServer, tmp_path: Path) -> None:
    pinned = _pinned(hub)
    ensure_files(pinned, tmp_path)
    hub.requests.clear()
    ensure_files(pinned, tmp_path)
    assert hub.requests == []
    ensure_files(pinned, tmp_path, download=False)  # offline: fine, all verified


def test_wrong_sha256_is_refused_and_nothing_kept(hub: _FileServer, tmp_path: Path) -> None:
    pinned = _pinned(hub, sha="0" * 64)
    with pytest.raises(ChecksumError, match="sha256"):
        ensure_files(pinned, tmp_path)
    assert not (tmp_path / "clinc.json").exists()
    assert not (tmp_path / "clinc.json.partial").exists()


def test_served_bytes_that_differ_from_the_pin_are_refused(hub: _FileServer,
                                                           tmp_path: Path) -> None:
    pinned = _pinned(hub)
    hub.mode = "corrupt"  # same size, other bytes
    with pytest.raises(ChecksumError):
        ensure_files(pinned, tmp_path)
    assert not (tmp_path / "clinc.json").exists()


def test_a_tampered_local_file_is_replaced(hub: _FileServer, tmp_path: Path) -> None:
    pinned = _pinned(hub)
    ensure_files(pinned, tmp_path)
    (tmp_path / "clinc.json").write_bytes(CLINC.replace(b"balance", b"BALANCE"))
    with pytest.raises(FileNotFoundError, match="sha256"):
        ensure_files(pinned, tmp_path, download=False)
    ensure_files(pinned, tmp_path)
    assert (tmp_path / "clinc.json").read_bytes() == CLINC


def test_offline_is_a_network_error(tmp_path: Path) -> None:
    pinned = replace(CLINC150, base_url=f"http://127.0.0.1:{modelhub_helpers._free_port()}")
    with pytest.raises(NetworkError):
        ensure_files(pinned, tmp_path)


@pytest.mark.parametrize("pinned", [CLINC150, BANKING77])
def test_official_sets_are_pinned_to_a_commit(pinned: PinnedSet) -> None:
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w-]+/[\w-]+/[0-9a-f]{40}",
                        pinned.base_url)
    assert pinned.licence.startswith("CC-BY-")
    for item in pinned.files:
        assert re.fullmatch(r"[0-9a-f]{64}", item.sha256) and item.size_bytes > 0


@pytest.mark.parametrize("pinned", [CLINC150, BANKING77])
def test_the_local_copies_verify_when_present(pinned: PinnedSet) -> None:
    root = Path("out/nlu-data")
    if not all((root / f.path).is_file() for f in pinned.files):
        pytest.skip("the public data sets are not in out/nlu-data")
    assert ensure_files(pinned, root, download=False) == root

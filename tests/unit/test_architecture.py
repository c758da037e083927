"""The architecture, checked: import contracts (import-linter) and module sizes.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``): ``voicebot``
never imports ``server``, ``bench`` or ``loadtests``; ``server`` never imports
``bench`` or ``loadtests``; the pure core (session and its parts,
protocol, commands, audio, the endpointer, dialog, telephony codecs)
imports no model runtime and not the engines package; ``loadtests`` imports
neither ``server`` nor a model runtime; no import cycles between voicebot's
folders.  ``lint-imports`` checks them on the code as it is, with grimp's
static import graph (imports inside functions count).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.fail("import-linter is not installed: it is in the dev extra (make test has it)")
    run = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "BROKEN" not in run.stdout and " KEPT" in run.stdout


def test_no_module_is_over_400_lines() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("voicebot", "server", "bench", "loadtests", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"

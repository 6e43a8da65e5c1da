"""ruff over the whole tree: no unused imports or names, no likely bugs, sorted imports."""

import subprocess
from pathlib import Path

from .conftest import BIN


def test_ruff_is_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=Path(__file__).parents[1],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

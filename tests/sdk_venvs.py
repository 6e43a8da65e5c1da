"""The SageMaker Python SDK venvs that ``make sdk-venvs`` creates (.venv-sdk2, .venv-sdk3): never dependencies of
dogops, so the tests that run the SDK find its Python here.

A missing venv skips such a test on a developer's machine, and fails it in CI (``CI`` set) or wherever
``DOGOPS_REQUIRE_SDK=1`` is set, so that CI never passes by skipping what it was meant to run.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def required() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false") or os.environ.get("DOGOPS_REQUIRE_SDK") == "1"


def sdk_python(major: int) -> Path:
    """The Python of SDK ``major``'s venv (2 or 3); a skip (or a failure, when required) if it is missing."""
    python = ROOT / f".venv-sdk{major}" / "bin" / "python"
    if not (python.parent.parent / ".installed").exists():
        message = f"{python.parent.parent.name} is missing: `make sdk-venvs` creates it"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    return python

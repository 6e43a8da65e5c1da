"""The services image installs services/requirements.txt: the same pins as pyproject.toml, and no torch."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_every_pin_is_pyprojects_and_torch_stays_out():
    project = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    requirements = _lines((ROOT / "services" / "requirements.txt").read_text())
    assert requirements and all("==" in line for line in requirements)
    assert set(requirements) <= project, set(requirements) - project
    assert not any(line.startswith(("torch", "efficientnet", "optuna", "matplotlib")) for line in requirements)

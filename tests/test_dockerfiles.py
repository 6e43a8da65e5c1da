"""Static checks of the images' Dockerfiles against the SageMaker container rules (contracts.md §1)."""

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("*/Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_image_is_a_build_argument_and_the_entrypoint_is_exec_form_without_tini(dockerfile):
    text = "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M) and re.search(r"^FROM \$\{BASE_IMAGE\}", text, re.M)
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entrypoint and entrypoint.group(1).startswith("["), "exec form, so the process is PID 1"
    assert "tini" not in text and not re.search(r"^USER ", text, re.M), "no tini, runs as root"


def test_both_images_exist():
    assert {ROOT / "training" / "Dockerfile", ROOT / "serving" / "Dockerfile"} <= set(DOCKERFILES)


def test_the_serving_image_accepts_a_bind_port():
    text = (ROOT / "serving" / "Dockerfile").read_text()
    assert "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in text
    assert 'ENTRYPOINT ["serve"]' in text

"""The SageMaker SDK examples' notebooks are their scripts, cell for cell (examples/sagemaker-sdk/notebooks.py
writes them), and hold the workflow's steps in order; the integration suite runs them on the stack."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sagemaker-sdk"
STEPS = ["setup", "upload", "fit", "fit2", "tune", "best", "deploy", "predict", "cleanup"]


def test_the_notebooks_are_the_scripts():
    result = subprocess.run([sys.executable, EXAMPLES / "notebooks.py", "--check"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("major", [2, 3])
def test_each_notebook_holds_the_workflow_in_order(major):
    book = json.loads((EXAMPLES / f"sdk_v{major}.ipynb").read_text())
    tags = [tag for cell in book["cells"] for tag in cell["metadata"].get("tags", [])]
    assert tags == STEPS
    assert book["nbformat"] == 4 and len({cell["id"] for cell in book["cells"]}) == len(book["cells"])

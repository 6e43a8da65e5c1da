"""The Lambda runtime venvs (``make setup``): pyenv's newest patch release of each minor, the runtime's packages
only, made once per lock."""

import json
import subprocess

import pytest

from services.gateway import lambda_interpreters


def test_pyenv_python_is_the_newest_patch_release(tmp_path, monkeypatch):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    for name in ("3.12.9", "3.12.10", "3.12-dev", "3.12.11t", "3.13.0"):
        executable = tmp_path / "versions" / name / "bin" / f"python{name[:4]}"
        executable.parent.mkdir(parents=True)
        executable.write_text("")
    assert lambda_interpreters.pyenv_python("3.12") == tmp_path / "versions/3.12.10/bin/python3.12"
    assert lambda_interpreters.pyenv_python("3.13") == tmp_path / "versions/3.13.0/bin/python3.13"
    assert lambda_interpreters.pyenv_python("3.11") is None


@pytest.mark.skipif(lambda_interpreters.pyenv_python("3.12") is None, reason="pyenv has no Python 3.12 here")
def test_a_venv_holds_the_runtime_packages_alone_and_is_made_once(tmp_path, monkeypatch):
    import boto3

    monkeypatch.setenv("DOGOPS_LAMBDA_VENVS", str(tmp_path))
    base, uv = lambda_interpreters.pyenv_python("3.12"), str(lambda_interpreters.REPOSITORY / ".venv/bin/uv")
    assert lambda_interpreters.make("3.12", base, uv) is True
    python = lambda_interpreters.python("python3.12")
    assert python == tmp_path / "python3.12/bin/python"
    found = json.loads(subprocess.run(
        [python, "-I", "-c", "import json, sys, boto3, awslambdaric, importlib.metadata as m; print(json.dumps("
         "[sys.version_info[:2], boto3.__version__, sorted(d.metadata['Name'].lower() for d in m.distributions())]))"],
        capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert found == [[3, 12], boto3.__version__, ["awslambdaric", "boto3", "botocore", "jmespath", "python-dateutil",
                                                  "s3transfer", "simplejson", "six", "snapshot-restore-py", "urllib3"]]
    assert lambda_interpreters.make("3.12", base, uv) is False  # same lock, same Python: kept
    assert lambda_interpreters.python("python3.13") is None

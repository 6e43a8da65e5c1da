"""The SageMaker Python SDK set up by ``dogops env``: the configuration file it writes and exports, and the real
SDK (v2 and v3, from `make sdk-venvs`) resolving its session's bucket and its role defaults from it inside a network
namespace that has only loopback, so that any call the SDK made to AWS (STS, telemetry) would fail the test."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.stack import settings

from ..conftest import BIN
from ..sdk_venvs import sdk_python

ROOT = Path(__file__).resolve().parents[2]


def dogops_env(state_dir: Path, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "DOGOPS_"))}
    env.update(DOGOPS_STATE_DIR=str(state_dir), **extra)
    return subprocess.run(["sh", "-c", f'eval "$({BIN / "dogops"} env)" && env'], env=env, capture_output=True,
                          text=True, timeout=60, cwd=state_dir.parent)


def exported(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_env_writes_the_sdk_config_and_exports_its_path(tmp_path):
    exports = exported(dogops_env(tmp_path / "stack", DOGOPS_BUCKET="my-bucket"))
    path = Path(exports["SAGEMAKER_USER_CONFIG_OVERRIDE"])
    assert path == tmp_path / "stack" / "sagemaker-sdk" / "config.yaml"
    role = f"arn:aws:iam::{settings.ACCOUNT}:role/{settings.SAGEMAKER_ROLE}"
    assert yaml.safe_load(path.read_text()) == {"SchemaVersion": "1.0", "SageMaker": {
        "PythonSDK": {"Modules": {"Session": {"DefaultS3Bucket": "my-bucket"}, "TelemetryOptOut": True}},
        "TrainingJob": {"RoleArn": role}, "Model": {"ExecutionRoleArn": role}}}
    assert exports["AWS_SECRET_ACCESS_KEY"] not in path.read_text()  # no secret in a file others may read
    assert path.stat().st_mode & 0o777 == 0o644


def test_env_rewrites_the_config_when_the_stack_changes_and_leaves_it_otherwise(tmp_path):
    path = Path(exported(dogops_env(tmp_path / "stack"))["SAGEMAKER_USER_CONFIG_OVERRIDE"])
    written = path.stat().st_mtime_ns
    exported(dogops_env(tmp_path / "stack"))
    assert path.stat().st_mtime_ns == written
    exported(dogops_env(tmp_path / "stack", DOGOPS_BUCKET="another"))
    assert yaml.safe_load(path.read_text())["SageMaker"]["PythonSDK"]["Modules"]["Session"] == {
        "DefaultS3Bucket": "another"}
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left


@pytest.mark.slow
def test_the_sdks_resolve_bucket_and_roles_from_the_stack_alone(tmp_path):
    """Both SDKs, each in its own venv, inside a loopback-only namespace with the stack's emulator."""
    pythons = [sdk_python(2), sdk_python(3)]
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("this test needs `unshare` (util-linux) and `ip` (iproute2)")
    inner = Path(__file__).with_name("netns_sdk_setup.py")
    command = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider " \
              f"--basetemp {tmp_path / 'inner'} {inner}"
    result = subprocess.run(["unshare", "-n", "--", "sh", "-c", command], capture_output=True, text=True,
                            env={**os.environ, "DOGOPS_IN_NETNS": "1",
                                 "DOGOPS_SDK_PYTHONS": os.pathsep.join(map(str, pythons))},
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout.splitlines()[-1], result.stdout[-3000:]

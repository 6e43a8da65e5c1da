"""The SDKs' defaults from `dogops env`, against a real emulator seeded by the stack's own bootstrap. Run only
inside a loopback-only network namespace (test_sdk_setup.py starts it with `unshare -n`): a request the SDK sent
anywhere but the stack fails to connect, and so fails these tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.stack import settings

from ..conftest import BIN
from ..services import processes

pytestmark = pytest.mark.skipif(os.environ.get("DOGOPS_IN_NETNS") != "1", reason="needs the network namespace")
PROBE = Path(__file__).with_name("sdk_probe.py")
PYTHONS = dict(zip((2, 3), os.environ.get("DOGOPS_SDK_PYTHONS", "").split(os.pathsep), strict=False))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An emulator, seeded by ``bootstrap seed``, and ``dogops env``'s exports for it."""
    root = tmp_path_factory.mktemp("stack")
    emulator = processes.emulator(root)
    (root / "state").mkdir()
    (root / "state" / "root-secret").write_text(settings.root_secret())  # the stack's own secret, as `up` keeps it
    boot = {**os.environ, **settings.emulator_env(), "AWS_ENDPOINT_URL": emulator.url}
    seeded = subprocess.run([sys.executable, "-m", "services.stack.bootstrap", "seed", "--base-dir", root / "ml"],
                            env=boot, capture_output=True, text=True, timeout=300, cwd=processes.ROOT)
    assert seeded.returncode == 0, seeded.stderr
    base = {"PATH": os.environ["PATH"], "HOME": str(root), "LANG": "C.UTF-8"}  # no developer's AWS config
    lines = subprocess.run([BIN / "dogops", "env"], capture_output=True, text=True, check=True, timeout=60,
                           env={**base, "DOGOPS_STATE_DIR": str(root / "state"),
                                "DOGOPS_EMULATOR_PORT": str(emulator.port)}).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines.splitlines())
    yield {**base, **exports}, emulator
    emulator.stop()


def probe(env: dict, major: int) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHONS[major], PROBE, str(major)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=env["HOME"])


@pytest.mark.parametrize("major", [2, 3])
def test_session_bucket_and_role_defaults_come_from_the_stack(stack, major):
    env, emulator = stack
    result = probe(env, major)
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["version"].startswith(f"{major}.")
    role = settings.sagemaker_role_arn()
    assert answer["bucket"] == settings.BUCKET
    assert answer["training_role"] == role
    assert answer.get("model_role", role) == role
    iam = processes.client("iam", emulator.url)
    trust = iam.get_role(RoleName=settings.SAGEMAKER_ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}


@pytest.mark.parametrize("major", [2, 3])
def test_without_the_config_the_sdk_asks_aws_and_fails_here(stack, major):
    """The control: the same probe without the file reaches for AWS's STS, which this namespace cannot reach."""
    env = {k: v for k, v in stack[0].items() if k != "SAGEMAKER_USER_CONFIG_OVERRIDE"}
    result = probe(env, major)
    assert result.returncode != 0
    output = result.stdout + result.stderr  # SDK v2 prints its traceback (rich's) on stdout
    assert "sts.us-east-1.amazonaws.com" in output, output[-3000:]

"""``dogops up`` / ``invoke`` / ``status`` / ``down``: the native stack end to end, on free ports and a temporary
state folder so that it never meets a user's stack.

The long test trains a real (small) model, deploys it to the emulator, calls the
Lambda function through the gateway with boto3, crashes the serving process and
watches the supervisor bring it back, then stops everything by PID.
"""

import json
import os
import shlex
import signal
import socket
import time
from pathlib import Path

import pytest

from ..conftest import free_port, run_script


def group_members(pgid: int) -> set[int]:
    """Live processes of process group ``pgid``, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _live(pids: set[int]) -> set[int]:
    live = set()
    for pid in pids:
        try:
            if (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.add(pid)
        except OSError:
            pass
    return live


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.5)
    return value


@pytest.fixture
def native(tmp_path) -> dict[str, str]:
    """The environment of a private native stack (free ports, state under tmp_path); stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_", "SAGEMAKER_", "DOGOPS_"))}
    env.update(DOGOPS_STATE_DIR=str(tmp_path / "stack"), DOGOPS_EMULATOR_PORT=str(free_port()),
               DOGOPS_GATEWAY_PORT=str(free_port()), DOGOPS_SERVING_PORT=str(free_port()))
    yield env
    run_script("dogops", "down", env=env, timeout=120)


def dogops(env: dict, *args, timeout: float = 120):
    return run_script("dogops", *args, env=env, timeout=timeout)


def state(env: dict) -> dict:
    return json.loads((Path(env["DOGOPS_STATE_DIR"]) / "state.json").read_text())


def test_without_a_stack_down_is_a_no_op_and_status_fails(native):
    down = dogops(native, "down")
    assert down.returncode == 0 and "no native stack is running" in down.stdout
    status = dogops(native, "status")
    assert status.returncode == 1 and status.stdout.count("UNHEALTHY") == 3


def test_env_prints_exports_for_the_configured_ports(native):
    out = dogops(native, "env").stdout
    exports = dict(shlex.split(line)[1].split("=", 1) for line in out.splitlines())
    gateway = f"http://127.0.0.1:{native['DOGOPS_GATEWAY_PORT']}"
    assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{native['DOGOPS_EMULATOR_PORT']}"
    assert exports["AWS_ENDPOINT_URL_LAMBDA"] == exports["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == gateway
    assert exports["DOGOPS_SAMPLES_URL"] == gateway + "/samples"
    assert {"AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DOGOPS_BUCKET",
            "DOGOPS_ENDPOINT_NAME", "DOGOPS_FUNCTION_NAME"} <= exports.keys()


def test_env_takes_the_state_dirs_secret_not_a_stale_shells(native):
    first = dict(shlex.split(line)[1].split("=", 1) for line in dogops(native, "env").stdout.splitlines())
    secret = (Path(native["DOGOPS_STATE_DIR"]) / "root-secret").read_text().strip()
    assert first["AWS_SECRET_ACCESS_KEY"] == first["DOGOPS_ROOT_SECRET"] == secret
    stale = {**native, "DOGOPS_ROOT_SECRET": "from-an-older-stack"}
    again = dict(shlex.split(line)[1].split("=", 1) for line in dogops(stale, "env").stdout.splitlines())
    assert again["AWS_SECRET_ACCESS_KEY"] == again["DOGOPS_ROOT_SECRET"] == secret


def test_up_refuses_a_taken_port(native):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(native["DOGOPS_GATEWAY_PORT"])))
        busy.listen()
        result = dogops(native, "up")
    assert result.returncode != 0
    assert f"port {native['DOGOPS_GATEWAY_PORT']} (gateway)" in result.stderr and "in use" in result.stderr
    assert not (Path(native["DOGOPS_STATE_DIR"]) / "state.json").exists()


def _invoke(env: dict, *args):
    result = dogops(env, "invoke", *args)
    ranked = [line for line in result.stdout.splitlines() if line.strip()[:2].rstrip(".").isdigit()]
    return result, ranked


@pytest.mark.slow
def test_up_invoke_status_restart_down(native):
    up = dogops(native, "up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "ready" in up.stdout and "cold start: ready in" in up.stdout
    assert f"demo page: http://127.0.0.1:{native['DOGOPS_GATEWAY_PORT']}/" in up.stdout
    logs = Path(native["DOGOPS_STATE_DIR"]) / "logs"
    assert {"emulator.log", "seed.log", "train.log", "publish.log", "gateway.log"} <= {
        p.name for p in logs.iterdir()}
    hosted = list((Path(native["DOGOPS_STATE_DIR"]) / "hosting").glob("dogops-*/AllTraffic/serve.log"))
    assert len(hosted) == 1 and "worker ready" in hosted[0].read_text()  # the emulator hosts the stack's endpoint

    again = dogops(native, "up")
    assert again.returncode != 0 and "already running" in again.stderr

    exports = dict(shlex.split(line)[1].split("=", 1) for line in dogops(native, "env").stdout.splitlines())
    user = {**exports, "PATH": native["PATH"], "HOME": native.get("HOME", "/tmp")}
    dog = exports["DOGOPS_SAMPLES_URL"] + "/dog.jpg"
    result, ranked = _invoke(user, "--url", dog)
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr
    photo = Path(native["DOGOPS_STATE_DIR"]) / "samples" / "dog.jpg"
    result, ranked = _invoke(native, "--file", photo)  # no endpoint in the environment: the local gateway
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr
    bad, _ = _invoke(user, "--url", "ftp://example.invalid/dog.jpg")
    assert bad.returncode == 1 and "400" in bad.stderr

    status = dogops(native, "status")
    assert status.returncode == 0 and status.stdout.count(" healthy") == 3, status.stdout

    before = state(native)
    os.kill(before["children"]["serving"], signal.SIGKILL)  # the endpoint's serve: the emulator replaces it
    after = wait_for(lambda: (s := state(native))["children"].get("serving") not in (None, before["children"][
        "serving"]) and s, 60, "serving was not restarted")
    assert after["restarts"] == {} and after["phase"] == "ready"
    wait_for(lambda: dogops(native, "status").returncode == 0, 180, "serving did not become healthy again")
    result, ranked = _invoke(user, "--url", dog)
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr

    pids = {after["supervisor"]} | set().union(*(group_members(pid) for pid in after["children"].values()))
    down = dogops(native, "down")
    assert down.returncode == 0 and "stopped in" in down.stdout, down.stdout + down.stderr
    assert not _live(pids), "down returned before every process was gone"
    assert state(native)["phase"] == "stopped" and state(native)["children"] == {}
    assert dogops(native, "status").returncode == 1

    again = dogops(native, "up", timeout=900)  # right after down: the model on disk is current, no training
    assert again.returncode == 0 and "ready" in again.stdout, again.stdout + again.stderr
    assert dogops(native, "down").returncode == 0


"""Crashes in the serving container are survived: a killed worker is respawned, a killed server restarted."""

import os
import signal
import subprocess
import threading

from .stacks import wait_until


def _predicts(runtime, stack_env, body) -> bool:
    try:
        runtime.invoke_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"], Body=body, ContentType="image/jpeg")
        return True
    except Exception:
        return False


def _master_or_none(stack):
    try:
        return stack.serving_master()
    except (KeyError, IndexError, OSError, ValueError, subprocess.CalledProcessError):
        return None  # between a crash and the restart


def test_a_worker_killed_mid_run_is_respawned(stack, runtime, stack_env, sample_jpeg):
    workers = stack.serving_workers()
    stop = threading.Event()
    traffic = threading.Thread(target=lambda: [_predicts(runtime, stack_env, sample_jpeg)
                                               for _ in iter(stop.is_set, True)])
    traffic.start()
    try:
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: len(stack.serving_workers()) == len(workers) and workers[0] not in
                   stack.serving_workers(), 120, "the worker was not replaced")
    finally:
        stop.set()
        traffic.join()
    wait_until(lambda: _predicts(runtime, stack_env, sample_jpeg), 120, "no prediction after the respawn")
    assert all(_predicts(runtime, stack_env, sample_jpeg) for _ in range(10))


def test_a_killed_serving_process_is_brought_back(stack, runtime, stack_env, sample_jpeg):
    before = stack.serving_master()
    stack.kill_serving()
    wait_until(lambda: _master_or_none(stack) not in (None, before), 300, "serving was not restarted")
    wait_until(lambda: _predicts(runtime, stack_env, sample_jpeg), 300, "serving did not come back")
    assert all(_predicts(runtime, stack_env, sample_jpeg) for _ in range(10))

"""``make test-faults``: the short run of ``benchmarks/soak.py`` (``make soak`` is the 10-minute one). A private
native stack on free ports takes 16 concurrent Lambda invocations (real boto3 ``lambda.invoke`` of the project's
prediction function, which calls the endpoint through the gateway) with no error, then each of its processes is
SIGKILLed under that load: every one but the supervisor comes back by itself, no request the client retried is
lost, nothing is orphaned, and the function, the endpoint and the bucket's objects are intact afterwards; no
process is left."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KILLS = ["emulator", "gateway", "serving", "serving-worker", "lambda-worker", "supervisor"]


@pytest.mark.slow
def test_load_then_each_process_killed_under_it(tmp_path):
    state = tmp_path / "stack"
    run = subprocess.run([sys.executable, "benchmarks/soak.py", "--seconds", "10", "--concurrency", "16",
                          "--state-dir", str(state)], cwd=ROOT, text=True, capture_output=True, timeout=1500)
    print(run.stdout)  # the table (pytest -s shows it; CI's log keeps it on failure)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(next((state / "faults").glob("soak-*.json")).read_text())
    steady = figures["steady"]
    assert steady["requests"] > 0 and steady["failed_attempts"] == steady["lost"] == 0, steady
    assert steady["p50_ms"] and steady["p99_ms"] >= steady["p50_ms"]
    assert {role: start["processes"] > 0 for role, start in figures["rss_start"].items()} == dict.fromkeys(
        figures["rss_start"], True)  # every role was found and measured
    assert [kill["killed"] for kill in figures["kills"]] == KILLS
    for kill in figures["kills"]:
        assert kill["pid"] and kill["recovery_s"] is not None, kill
        assert kill["replaced"] == (kill["killed"] != "supervisor"), kill  # nothing restarts the native supervisor
        assert kill["orphans"] == 0, kill  # what the killed process had started went with it
    assert figures["lost"] == 0 and figures["all_requests"]["requests"] > steady["requests"]
    assert figures["state_intact"] and figures["leftovers"] == 0
    assert figures["failures"] == []

"""``dogops down`` signals only the processes ``state.json`` recorded: a pid's start time must still match."""

import json
import subprocess
import types

import pytest

from dogops import stack_cli
from services.stack.supervisor import Layout, Supervisor, start_time


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _down(tmp_path, monkeypatch, state: dict) -> None:
    layout = Layout(tmp_path)
    layout.state.write_text(json.dumps(state))
    monkeypatch.setattr(stack_cli, "Layout", lambda: layout)
    stack_cli.down(types.SimpleNamespace(timeout=1))


def test_a_reused_pid_is_not_signalled(tmp_path, monkeypatch, capsys, sleeper):
    pid, wrong = sleeper.pid, str(start_time(sleeper.pid) - 1)
    _down(tmp_path, monkeypatch, {"supervisor": pid, "children": {"serving": pid}, "start_times": {str(pid): wrong}})
    assert sleeper.poll() is None
    assert f"pid {pid} is not the process state.json recorded" in capsys.readouterr().out
    _down(tmp_path, monkeypatch, {"supervisor": pid, "children": {}})  # no start time recorded: nothing verified
    assert sleeper.poll() is None


def test_a_reused_pid_is_not_a_running_stack(tmp_path, monkeypatch, sleeper):
    pid = sleeper.pid
    layout = Layout(tmp_path)
    layout.state.write_text(json.dumps({"supervisor": pid, "phase": "ready", "children": {},
                                        "start_times": {str(pid): start_time(pid) - 1}}))
    assert stack_cli._running_supervisor(layout) is None  # so `up` starts, and `status` says none runs here
    layout.state.write_text(json.dumps({"supervisor": pid, "phase": "ready", "children": {},
                                        "start_times": {str(pid): start_time(pid)}}))
    assert stack_cli._running_supervisor(layout)["supervisor"] == pid


def test_the_recorded_process_is_stopped(tmp_path, monkeypatch, sleeper):
    pid = sleeper.pid
    _down(tmp_path, monkeypatch, {"supervisor": pid, "children": {}, "start_times": {str(pid): start_time(pid)}})
    assert sleeper.wait(5) < 0


def test_the_supervisor_records_each_pid_with_its_start_time(tmp_path):
    supervisor = Supervisor(Layout(tmp_path))
    supervisor.write_state()
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["start_times"] == {str(state["supervisor"]): start_time(state["supervisor"])}
    assert isinstance(state["start_times"][str(state["supervisor"])], int)

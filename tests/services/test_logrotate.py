"""Log rotation under a real writer: a supervisor ``Child`` printing as fast as it can into its log while the logs
are rotated keeps the number of files and the live one's size bounded, leaves no hole after a truncation (its
writes land at the new end), tears no line, and the child never notices."""

import sys
import threading
import time

import yaml

from services.stack import logrotate
from services.stack.supervisor import Child, Layout, Supervisor

from .processes import ROOT

LINE = "x" * 99  # with its newline, 100 bytes
WRITER = f"import time\nfor i in range(40000):\n    print(f'{{i:08d}} {LINE[:90]}', flush=True)\n    time.sleep(0.00005)\n"


def test_a_busy_childs_log_stays_under_its_bound(tmp_path, monkeypatch):
    max_bytes, backups = 64 << 10, 2
    monkeypatch.setenv("DOGOPS_LOG_MAX_BYTES", str(max_bytes))
    monkeypatch.setenv("DOGOPS_LOG_BACKUPS", str(backups))
    log = tmp_path / "logs" / "writer.log"
    child = Child("writer", [sys.executable, "-c", WRITER], {}, log)
    child.start()
    rotations = 0
    while child.poll() is None:
        rotations += len(logrotate.rotate_all([tmp_path / "logs"]))
        time.sleep(0.02)
    assert child.proc.returncode == 0
    logrotate.rotate_all([tmp_path / "logs"])
    names = sorted(p.name for p in log.parent.iterdir())
    assert names == ["writer.log", "writer.log.1", "writer.log.2"], names  # never more than the backups
    assert rotations >= 10, rotations  # 4 MB written through a 64 KiB bound
    live = log.stat()
    assert live.st_size <= max_bytes
    assert live.st_blocks * 512 >= live.st_size - 4096  # written at the new end: no hole where the old data was
    newest = log if live.st_size else log.with_name("writer.log.1")  # the last rotation may have come after the end
    last = newest.read_text().splitlines()
    assert last[-1].startswith("00039999 "), last[-1:]  # the child's last line is in the newest file
    assert all(len(line) == 100 - 1 for line in last), f"a torn line in {newest.name}"


def test_small_logs_and_missing_files_are_left_alone(tmp_path):
    small = tmp_path / "a.log"
    small.write_text("hello\n")
    assert not logrotate.rotate(small, 1024, 3)
    assert not logrotate.rotate(tmp_path / "gone.log", 1024, 3)
    assert small.read_text() == "hello\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.log"]


def test_no_backups_means_truncation_only(tmp_path):
    big = tmp_path / "b.log"
    big.write_bytes(b"y\n" * 1000)
    assert logrotate.rotate(big, 100, 0)
    assert big.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["b.log"]


def test_every_compose_service_of_the_stack_has_a_bounded_log():
    """In compose, Docker rotates each container's output (json-file ``max-size``/``max-file``)."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    unbounded = [name for name, service in services.items() if name != "localstack"  # a comparison, not the stack
                 and not {"max-size", "max-file"} <= set((service.get("logging") or {}).get("options") or {})]
    assert not unbounded


def test_the_supervisor_rotates_its_logs_and_the_hosted_servers_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DOGOPS_LOG_MAX_BYTES", "1000")
    monkeypatch.setattr(logrotate, "CHECK_SECONDS", 0.05)
    supervisor = Supervisor(Layout(tmp_path))
    logs = [tmp_path / "logs" / "gateway.log", tmp_path / "hosting" / "dogops-AllTraffic" / "1" / "serve.log"]
    for log in logs:
        log.parent.mkdir(parents=True)
        log.write_bytes(b"z\n" * 1000)
    rotating = threading.Thread(target=supervisor.rotate_logs)
    rotating.start()
    try:
        deadline = time.monotonic() + 30
        while any(log.stat().st_size for log in logs) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        supervisor.stopping.set()
        rotating.join()
    assert [(log.stat().st_size, log.with_name(log.name + ".1").stat().st_size) for log in logs] == [(0, 2000)] * 2

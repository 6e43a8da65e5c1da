"""A model server seen as SageMaker sees an endpoint's instance: its log in CloudWatch Logs, its use in metrics.

:class:`InstanceWatch` follows one server's log file into ``/aws/sagemaker/Endpoints/<endpoint>``, stream
``<variant>/<instance id>`` (an id like an EC2 instance's, new for each server, as a replaced instance has a new
one) from its first line, twice a second; every ``DOGOPS_INSTANCE_METRICS_S`` seconds (default 10) it samples the
server's process group from ``/proc`` (Linux): ``CPUUtilization`` (percent of one core over the interval, so up to
100 x cores, as AWS counts it), ``MemoryUtilization`` (resident memory of the group over the machine's) and
``DiskUtilization`` (of the file system holding the server's folder). :meth:`InstanceWatch.ready` records
``ModelSetupTime``; :meth:`InstanceWatch.stop` sends what is left.

:class:`ContainerWatch` does the same for a model container (hosting with Docker), in the hoster's process and
through its boto3 session: ``docker logs --follow`` into the stream, ``docker stats`` (CPU and memory) sampled,
until the container is gone.
"""

import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

from . import cloudwatch_logs, sagemaker_metrics
from .cloudwatch_logs import LogWriter
from .metrics import MetricPublisher

log = logging.getLogger(__name__)

FOLLOW_S = 0.5


def instance_id() -> str:
    return "i-" + secrets.token_hex(9)[:17]


def _interval() -> float:
    return float(os.environ.get("DOGOPS_INSTANCE_METRICS_S", "10"))


def group_usage(pgid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of the processes in process group ``pgid``."""
    ticks, pages = 0, 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # fields from the state on: state ppid pgrp ... utime(11) stime(12) ... rss(21)
            ticks += int(fields[11]) + int(fields[12])
            pages += int(fields[21])
    return ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE")


def _memory_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


class InstanceWatch:
    """One model server's log and use, for endpoint ``endpoint``'s variant ``variant`` in ``region``."""

    def __init__(self, region: str, endpoint: str, variant: str, log_path: Path, pgid: int, folder: Path):
        self.region, self.endpoint, self.variant = region, endpoint, variant
        self.log_path, self.pgid, self.folder = log_path, pgid, folder
        self.stream = f"{variant}/{instance_id()}"
        self.started = time.monotonic()
        self.interval = _interval()
        self._offset, self._partial = 0, b""
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"instance-{endpoint}-{variant}", daemon=True)
        self._thread.start()

    def renewed(self, pgid: int) -> "InstanceWatch":
        """The watch of the server that replaces this one (a new instance, with a new id) in the same folder."""
        return InstanceWatch(self.region, self.endpoint, self.variant, self.log_path, pgid, self.folder)

    def ready(self) -> None:
        """The server answered its first ``/ping``: ``ModelSetupTime``."""
        sagemaker_metrics.model_setup(self.region, self.endpoint, self.variant, time.monotonic() - self.started)

    def stop(self) -> None:
        """The server is gone: its last lines are sent."""
        self._stopped.set()
        self._thread.join(timeout=10)
        self._follow(final=True)
        cloudwatch_logs.shared(self.region).flush()

    def _run(self) -> None:
        sampled = self._sample(None)
        next_sample = time.monotonic() + self.interval
        while not self._stopped.wait(FOLLOW_S):
            self._follow()
            if time.monotonic() >= next_sample:
                sampled = self._sample(sampled)
                next_sample += self.interval

    def _follow(self, final: bool = False) -> None:
        """The log's new complete lines (and, at the end, an unfinished last one) to CloudWatch Logs."""
        try:
            with open(self.log_path, "rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = b"" if final else lines.pop()
        writer = cloudwatch_logs.shared(self.region)
        group = f"/aws/sagemaker/Endpoints/{self.endpoint}"
        for line in lines:
            writer.write(group, self.stream, line.decode("utf-8", "replace").rstrip("\r"))

    def _sample(self, before: tuple[float, float] | None) -> tuple[float, float] | None:
        """One utilization sample since ``before`` (cpu seconds, monotonic time); the new reference."""
        try:
            cpu, rss = group_usage(self.pgid)
            total = _memory_total()
        except (OSError, ValueError, IndexError) as exc:  # no /proc (not Linux): no utilization metrics
            log.debug("no utilization of process group %d: %s", self.pgid, exc)
            return None
        now = time.monotonic()
        if before is not None and now > before[1]:
            disk = shutil.disk_usage(self.folder if self.folder.exists() else self.folder.parent)
            sagemaker_metrics.utilization(self.region, self.endpoint, self.variant,
                                          cpu=max(0.0, cpu - before[0]) / (now - before[1]) * 100,
                                          memory=rss / total * 100, disk=disk.used / disk.total * 100)
        return cpu, now


class ContainerWatch:
    """One model container's log and use, for endpoint ``endpoint``'s variant ``variant``, through ``session``."""

    def __init__(self, session, endpoint: str, variant: str, container: str, ready_s: float):
        self.region, self.endpoint, self.variant, self.container = session.region_name, endpoint, variant, container
        self.stream = f"{variant}/{instance_id()}"
        self.logs = LogWriter(session.client("logs"))
        cloudwatch = session.client("cloudwatch")
        self.publisher = MetricPublisher(lambda region: cloudwatch)
        sagemaker_metrics.model_setup(self.region, endpoint, variant, ready_s, self.publisher)
        self._gone = threading.Event()
        threading.Thread(target=self._follow, name=f"container-log-{container}", daemon=True).start()
        threading.Thread(target=self._sample, name=f"container-stats-{container}", daemon=True).start()

    def _follow(self) -> None:
        """``docker logs --follow`` until the container is removed; then what is left is sent."""
        group = f"/aws/sagemaker/Endpoints/{self.endpoint}"
        try:
            with subprocess.Popen(["docker", "logs", "--follow", self.container], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                  errors="replace") as proc:
                for line in proc.stdout:
                    self.logs.write(group, self.stream, line.rstrip("\n"))
        finally:
            self._gone.set()
            self.logs.close()

    def _sample(self) -> None:
        while not self._gone.wait(_interval()):
            stats = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemPerc}}",
                                    self.container], capture_output=True, text=True, timeout=60)
            try:
                cpu, memory = (float(part.rstrip("%")) for part in stats.stdout.split())
            except ValueError:  # gone, or not answered
                continue
            sagemaker_metrics.utilization(self.region, self.endpoint, self.variant, cpu, memory,
                                          publisher=self.publisher)
        self.publisher.close()

"""Log events to CloudWatch Logs streams, in batches, off the caller's path.

:class:`LogWriter` keeps the events each stream has not yet sent (bounded: past ``max_pending`` the oldest are
dropped and counted, as an agent drops what it cannot ship) and a thread sends them every ``interval`` seconds with
``PutLogEvents``, within its limits (10,000 events, 1 MiB with 26 bytes per event, chronological order, 256 KiB per
message); the group and stream are created the first time they are written to. ``flush()`` sends at once (a job's
end), ``close()`` flushes and stops the thread.

    cloudwatch_logs.shared(region).write("/aws/lambda/fn", "2026/12/03/[$LATEST]abc", "START RequestId: ...")
"""

import logging
import threading
import time
from collections import deque

from ..stack import settings
from .clients import root_client

log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26  # bytes PutLogEvents counts per event besides its message
MAX_MESSAGE_BYTES = 262_144 - EVENT_OVERHEAD


def now_ms() -> int:
    return int(time.time() * 1000)


def _fit(message: str) -> str:
    """A message within ``MAX_MESSAGE_BYTES`` (cut at a character boundary, as the awslogs agents truncate)."""
    data = message.encode("utf-8")
    return message if len(data) <= MAX_MESSAGE_BYTES else data[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")


def batches(events: list[dict]) -> list[list[dict]]:
    """``events`` (sorted by timestamp) split into ``PutLogEvents`` calls within its count and size limits."""
    out, current, size = [], [], 0
    for event in events:
        cost = len(event["message"].encode("utf-8")) + EVENT_OVERHEAD
        if current and (len(current) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(event)
        size += cost
    return out + ([current] if current else [])


class LogWriter:
    """Batched writes to the log streams of one CloudWatch Logs client (thread-safe)."""

    def __init__(self, client, interval: float = 0.5, max_pending: int = 100_000):
        self.client, self.interval, self.max_pending = client, interval, max_pending
        self.dropped = 0  # events dropped because the emulator could not keep up (or was down)
        self._pending: dict[tuple[str, str], deque] = {}
        self._ready: set[tuple[str, str]] = set()  # streams known to exist
        self._lock = threading.Lock()  # the pending events
        self._send_lock = threading.Lock()  # one sender at a time: each stream's batches stay in order
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cloudwatch-logs-writer", daemon=True)
        self._thread.start()

    def write(self, group: str, stream: str, message: str, timestamp: int | None = None) -> None:
        """Queue one event (``timestamp`` in epoch milliseconds, default now); an empty message is skipped, as
        CloudWatch Logs takes none."""
        if not message.strip():
            return
        event = {"timestamp": now_ms() if timestamp is None else int(timestamp), "message": _fit(message)}
        with self._lock:
            queue = self._pending.setdefault((group, stream), deque())
            if len(queue) >= self.max_pending:
                queue.popleft()
                self.dropped += 1
            queue.append(event)

    def flush(self) -> None:
        """Send every queued event now (in the caller's thread)."""
        with self._send_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            for (group, stream), events in pending.items():
                try:
                    self._send(group, stream, sorted(events, key=lambda e: e["timestamp"]))
                except Exception as exc:  # noqa: BLE001 - the emulator may be down; the events are lost, not the caller
                    self.dropped += len(events)
                    log.warning("CloudWatch Logs %s %s: %d events not sent: %s", group, stream, len(events), exc)

    def close(self) -> None:
        """Flush and stop the writer's thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            if not self._closed:
                self.flush()

    def _send(self, group: str, stream: str, events: list[dict]) -> None:
        if (group, stream) not in self._ready:
            ensure_stream(self.client, group, stream)
            self._ready.add((group, stream))
        for batch in batches(events):
            try:
                self.client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            except self.client.exceptions.ResourceNotFoundException:  # deleted meanwhile: made again, as agents do
                ensure_stream(self.client, group, stream)
                self.client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)


def ensure_stream(client, group: str, stream: str) -> None:
    """Create the log group and stream unless they exist."""
    for create, kwargs in ((client.create_log_group, {}), (client.create_log_stream, {"logStreamName": stream})):
        try:
            create(logGroupName=group, **kwargs)
        except client.exceptions.ResourceAlreadyExistsException:
            pass


_shared: dict[str, LogWriter] = {}
_shared_lock = threading.Lock()


def shared(region: str = settings.REGION) -> LogWriter:
    """This process's writer to the stack's emulator in ``region`` (started on first use)."""
    with _shared_lock:
        if region not in _shared:
            _shared[region] = LogWriter(root_client("logs", region))
        return _shared[region]

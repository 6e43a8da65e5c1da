"""CloudWatch metrics, published off the caller's path, as AWS's services publish theirs.

:meth:`MetricPublisher.record` puts one sample on a bounded queue (a few microseconds; past ``max_queue`` samples
are dropped and counted, never waited for). A thread drains the queue every ``interval`` seconds, folds the samples
of each metric (namespace, name, dimensions, unit, region) per second into its distinct values with their counts
(``Values``/``Counts``: exact, and percentiles stay possible) and sends them with ``PutMetricData`` (at most 1,000 data
per call). Per-second folding keeps every period of one second or more exact. :meth:`MetricPublisher.record_many`
queues several samples of one moment as one entry (a request's metrics at the cost of one).

    metrics.shared().record("AWS/SageMaker", "Invocations", 1, dimensions=(("EndpointName", "ep"),
                            ("VariantName", "AllTraffic")))
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from ..stack import settings
from .clients import root_client

log = logging.getLogger(__name__)

MAX_DATA_PER_CALL = 1000
MAX_VALUES = 150  # distinct values in one datum
Dimensions = tuple[tuple[str, str], ...]


class MetricPublisher:
    """Samples to CloudWatch's ``PutMetricData``, batched by a thread (thread-safe)."""

    def __init__(self, client_for: Callable[[str], object] = lambda region: root_client("cloudwatch", region),
                 interval: float = 1.0, max_queue: int = 100_000):
        self.client_for, self.interval = client_for, interval
        self.dropped = 0  # samples dropped: the queue was full, or the emulator did not take them
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-metrics-publisher", daemon=True)
        self._thread.start()

    def record(self, namespace: str, name: str, value: float, unit: str = "None", dimensions: Dimensions = (),
               timestamp: float | None = None, region: str = settings.REGION) -> None:
        """One sample (``timestamp`` in epoch seconds, default now)."""
        self.record_many(namespace, dimensions, [(name, value, unit)], timestamp, region)

    def record_many(self, namespace: str, dimensions: Dimensions, samples: list[tuple[str, float, str]],
                    timestamp: float | None = None, region: str = settings.REGION) -> None:
        """Several samples ``(name, value, unit)`` of one moment and dimensions: one queue entry (one lock)."""
        try:
            self._queue.put_nowait((region, namespace, dimensions, int(time.time() if timestamp is None else timestamp),
                                    samples))
        except queue.Full:
            self.dropped += len(samples)

    def flush(self) -> None:
        """Send every queued sample now (in the caller's thread)."""
        with self._send_lock:
            samples = []
            while True:
                try:
                    samples.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for (region, namespace), data in fold(samples).items():
                client = self.client_for(region)
                for start in range(0, len(data), MAX_DATA_PER_CALL):
                    chunk = data[start:start + MAX_DATA_PER_CALL]
                    try:
                        client.put_metric_data(Namespace=namespace, MetricData=chunk)
                    except Exception as exc:  # noqa: BLE001 - the emulator may be down: the data are lost, not the caller
                        self.dropped += int(sum(sum(d["Counts"]) for d in chunk))
                        log.warning("PutMetricData %s: %d data not sent: %s", namespace, len(chunk), exc)

    def close(self) -> None:
        """Flush and stop the thread."""
        self._closed.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            self.flush()


def fold(entries: list[tuple]) -> dict[tuple[str, str], list[dict]]:
    """The queued entries as ``PutMetricData``'s ``MetricData`` per (region, namespace): per metric and second, its
    distinct values with their counts (``Values``/``Counts``, at most ``MAX_VALUES`` a datum): exact, and what
    CloudWatch computes percentiles from."""
    folded: dict[tuple, dict[float, int]] = {}
    for region, namespace, dimensions, second, samples in entries:
        for name, value, unit in samples:
            counts = folded.setdefault((region, namespace, name, dimensions, unit, second), {})
            counts[float(value)] = counts.get(float(value), 0) + 1
    out: dict[tuple[str, str], list[dict]] = {}
    for (region, namespace, name, dimensions, unit, second), counts in folded.items():
        pairs = sorted(counts.items())
        for start in range(0, len(pairs), MAX_VALUES):
            chunk = pairs[start:start + MAX_VALUES]
            out.setdefault((region, namespace), []).append({
                "MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions],
                "Timestamp": datetime.fromtimestamp(second, timezone.utc), "Unit": unit,
                "Values": [v for v, _ in chunk], "Counts": [float(c) for _, c in chunk]})
    return out


_shared: MetricPublisher | None = None
_shared_lock = threading.Lock()


def shared() -> MetricPublisher:
    """This process's publisher to the stack's emulator (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MetricPublisher()
        return _shared

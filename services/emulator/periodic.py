"""A daemon thread that runs one step every interval, started by the first request that needs it (the alarms'
evaluation, auto-scaling's, the scheduler's firing)."""

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``step()`` every ``interval()`` seconds (read once, when the thread starts) on a daemon thread that the
    first ``start()`` starts; a step that raises is logged and the next one runs as usual."""

    def __init__(self, name: str, step: Callable[[], None], interval: Callable[[], float]):
        self._name, self._step, self._interval = name, step, interval
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        interval = self._interval()
        while True:
            time.sleep(interval)
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the emulator goes on; the next step tries again
                log.exception("%s: step failed", self._name)

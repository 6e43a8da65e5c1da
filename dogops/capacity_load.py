"""One model-server instance under load: ``serve`` started on a model as the stack starts one, driven over loopback HTTP.

Two ways to load it. ``saturate``: closed loop, a fixed number of clients each sending its next request when the last
is answered; it finds the most the server can answer, not the latency a user would see. ``offer``: open loop, requests
sent at a fixed rate whatever the server does, as independent users (and SageMaker's ``InvocationsPerInstance``)
count them; each latency runs from the request's scheduled time, so a request that waits for a free client (the
server is behind) counts its wait (no coordinated omission).
"""

import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from training.archive import extract

SERVE = Path(sys.executable).parent / "serve"
START_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 60
MAX_IN_FLIGHT = 32  # open-loop clients at most: beyond them requests wait (and their wait counts)
MIN_STEP_REQUESTS = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Step:
    """One open-loop step: what was offered, what was answered, and how fast."""

    offered_rps: float
    achieved_rps: float
    sent: int
    errors: int
    p50_ms: float
    p99_ms: float


def read_images(folder: Path, limit: int = 64) -> list[bytes]:
    """Up to ``limit`` image files under ``folder`` (sorted, spread over its subfolders), as request bodies."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"no .jpg/.jpeg/.png images under {folder}")
    stride = max(1, len(paths) // limit)
    return [p.read_bytes() for p in paths[::stride][:limit]]


def percentile(values: list[float], q: int) -> float:
    """The ``q``th percentile (``statistics.quantiles``, exclusive method); the one value of a single sample."""
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


@contextlib.contextmanager
def running_server(model: Path, workers: int | None = None, cpus: set[int] | None = None):
    """``serve`` on ``model`` (a model folder, or a ``model.tar.gz`` unpacked first) on a free loopback port, with
    ``workers`` (default: serve's own, one per core) and pinned to ``cpus`` when given; yields its base URL."""
    model = Path(model)
    if not model.exists():
        raise FileNotFoundError(f"no model at {model}")
    if not SERVE.exists():
        raise FileNotFoundError(f"no serving runtime ({SERVE} is missing): install the serve extra")
    with tempfile.TemporaryDirectory(prefix="dogops-capacity-") as tmp:
        base = Path(tmp)
        if model.is_dir():
            (base / "model").symlink_to(model.absolute(), target_is_directory=True)
        else:
            extract(model, base / "model")
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "MODEL_DATA_URL"))}
        env.update(SAGEMAKER_BASE_DIR=str(base), SAGEMAKER_BIND_TO_PORT=str(port), DOGOPS_BIND_HOST="127.0.0.1",
                   TMPDIR=str(base))
        if workers:
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
        log_path = base / "serve.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen([str(SERVE)], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        try:
            url = f"127.0.0.1:{port}"
            _wait_ready(proc, url, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"serve exited with {proc.returncode} before it was ready: "
                               f"{lines[-1] if lines else 'no output'}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection(url, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"serve did not answer /ping within {START_TIMEOUT_S} s")


class _Client(threading.local):
    """One keep-alive connection per thread."""

    def post(self, url: str, body: bytes) -> bool:
        if not hasattr(self, "conn"):
            self.conn = http.client.HTTPConnection(url, timeout=REQUEST_TIMEOUT_S)
        try:
            self.conn.request("POST", "/invocations", body=body,
                              headers={"Content-Type": "image/jpeg", "Accept": "application/json"})
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            del self.conn
            return False


def warm(url: str, bodies: list[bytes], concurrency: int) -> None:
    """Every worker loads and runs the model once before anything is measured."""
    client = _Client()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: client.post(url, bodies[i % len(bodies)]), range(concurrency * 3)))
    if not all(results):
        raise RuntimeError(f"the server answered {results.count(False)} of {len(results)} warm-up requests "
                           "with an error: is it this kind of model, and are these images?")


def saturate(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> float:
    """Closed loop: ``concurrency`` clients back to back for ``seconds``; the answers per second."""
    client, done = _Client(), []
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            if client.post(url, bodies[i % len(bodies)]):
                done.append(time.perf_counter())
            i += concurrency

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(loop, range(concurrency)))
    return len(done) / (max(done) - began) if done else 0.0


def offer(url: str, bodies: list[bytes], rate: float, seconds: float) -> Step:
    """Open loop: ``rate`` requests per second for ``seconds`` (at least ``MIN_STEP_REQUESTS``), each timed from its
    scheduled send. The answered rate is the answers' own pace (answers less one, over the time from the first to
    the last): the offered rate while the server keeps up, its capacity once it falls behind."""
    count = max(MIN_STEP_REQUESTS, round(rate * seconds))
    client, outcomes = _Client(), []

    def send(i: int, due: float) -> None:
        ok = client.post(url, bodies[i % len(bodies)])
        outcomes.append((ok, time.perf_counter() - due, time.perf_counter()))

    began = time.perf_counter() + 0.05
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        for i in range(count):
            due = began + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            pool.submit(send, i, due)
    latencies = [latency * 1000 for ok, latency, _ in outcomes if ok]
    ends = sorted(end for ok, _, end in outcomes if ok)
    errors = count - len(latencies)
    if len(latencies) < 2:
        return Step(rate, 0.0, count, errors, float("inf"), float("inf"))
    return Step(rate, (len(ends) - 1) / max(ends[-1] - ends[0], 1e-9), count, errors, percentile(latencies, 50),
                percentile(latencies, 99))

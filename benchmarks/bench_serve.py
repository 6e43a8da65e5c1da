"""`make bench-serve`: the server against the raw in-process path, side by side.

The raw path is the same handler functions (decode, preprocess, forward,
encode) called directly on the same images:
- latency: one process using all cores for one request at a time;
- throughput: one single-threaded process per core, all busy.
The server is `serve` with its default configuration, driven over loopback
HTTP with keep-alive: one client for latency (concurrency 1), eight for
throughput (concurrency 8). Goals: p50 <= 1.10x raw, throughput >= 0.95x raw.

Usage: python benchmarks/bench_serve.py [--backbone resnet50] [--requests 40]
"""

import argparse
import http.client
import io
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def make_artifact(model_dir: Path, backbone: str) -> None:
    """A full-size classifier artifact (random weights cost the same to run as trained ones)."""
    import torch

    from training.artifact import write_artifact
    from training.breeds import BREEDS, folder_name
    from training.model import SPECS, BreedClassifier, build_backbone, build_head

    torch.manual_seed(0)
    net, _ = build_backbone(backbone, 224, pretrained=False)
    model = BreedClassifier(net, build_head(SPECS[backbone].feature_dim, 128, len(BREEDS)))
    write_artifact(model_dir, model, [folder_name(i) for i in range(len(BREEDS))], backbone, 224, 128, {})


def make_photos(count: int) -> list[bytes]:
    """Photo-sized (800x600) JPEGs with natural-looking noise."""
    rng = np.random.default_rng(0)
    photos = []
    for _ in range(count):
        base = rng.integers(0, 255, size=(6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((800, 600), Image.BICUBIC)
        noisy = np.clip(np.asarray(image) + rng.normal(0, 12, (600, 800, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "JPEG", quality=90)
        photos.append(buf.getvalue())
    return photos


def _handle(model, photo: bytes) -> bytes:
    from serving import inference

    data = inference.input_fn(photo, "image/jpeg")
    return inference.output_fn(inference.predict_fn(data, model), "application/json")[0].encode()


def _raw_worker(model_dir: str, photos: list[bytes], count: int, start, done) -> None:
    import torch

    from serving import inference

    torch.set_num_threads(1)
    model = inference.model_fn(model_dir)
    _handle(model, photos[0])
    start.wait()
    for i in range(count):
        _handle(model, photos[i % len(photos)])
    done.wait()


def raw_latency(model_dir: Path, photos: list[bytes], count: int) -> list[float]:
    import torch

    from serving import inference

    torch.set_num_threads(os.cpu_count())
    model = inference.model_fn(str(model_dir))
    for photo in photos[:3]:
        _handle(model, photo)
    times = []
    for i in range(count):
        started = time.perf_counter()
        _handle(model, photos[i % len(photos)])
        times.append(time.perf_counter() - started)
    return times


def raw_throughput(model_dir: Path, photos: list[bytes], per_process: int) -> float:
    cores = os.cpu_count()
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Barrier(cores + 1), ctx.Barrier(cores + 1)
    procs = [ctx.Process(target=_raw_worker, args=(str(model_dir), photos, per_process, start, done))
             for _ in range(cores)]
    for p in procs:
        p.start()
    start.wait()
    began = time.perf_counter()
    done.wait()
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join()
    return cores * per_process / elapsed


def _post(conn: http.client.HTTPConnection, photo: bytes) -> float:
    started = time.perf_counter()
    conn.request("POST", "/invocations", body=photo,
                 headers={"Content-Type": "image/jpeg", "Accept": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"server answered {response.status}")
    return time.perf_counter() - started


def serve_numbers(base: Path, photos: list[bytes], count: int, clients: int) -> tuple[list[float], float]:
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
           "DOGOPS_BIND_HOST": "127.0.0.1"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "serve")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for photo in photos[:3]:
            _post(conn, photo)
        latencies = [_post(conn, photos[i % len(photos)]) for i in range(count)]

        def client(k: int) -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for i in range(count // clients * 2):
                _post(c, photos[(k + i) % len(photos)])

        with ThreadPoolExecutor(clients) as pool:  # warm every worker first
            list(pool.map(lambda k: _post(http.client.HTTPConnection("127.0.0.1", port, timeout=60),
                                          photos[k]), range(clients)))
            began = time.perf_counter()
            list(pool.map(client, range(clients)))
            throughput = clients * (count // clients * 2) / (time.perf_counter() - began)
        return latencies, throughput
    finally:
        server.terminate()
        server.wait(timeout=30)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each side counts")
    args = parser.parse_args()
    runs = {"raw_lat": [], "raw_tput": [], "srv_lat": [], "srv_tput": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_artifact(base / "model", args.backbone)
        photos = make_photos(8)
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits both sides alike
            runs["raw_lat"].append(raw_latency(base / "model", photos, args.requests))
            runs["raw_tput"].append(raw_throughput(base / "model", photos, args.requests // 2))
            latencies, throughput = serve_numbers(base, photos, args.requests, clients=8)
            runs["srv_lat"].append(latencies)
            runs["srv_tput"].append(throughput)
    raw_lat, srv_lat = (min(runs[k], key=statistics.median) for k in ("raw_lat", "srv_lat"))
    raw_tput, srv_tput = max(runs["raw_tput"]), max(runs["srv_tput"])
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    p50r, p99r, p50s, p99s = _pct(raw_lat, 50), _pct(raw_lat, 99), _pct(srv_lat, 50), _pct(srv_lat, 99)
    print(f"{args.backbone}, 800x600 JPEG photos, {os.cpu_count()} cores, serve with its defaults, "
          f"best of {args.rounds} interleaved rounds")
    print(f"latency c=1   raw p50 {ms(p50r)} p99 {ms(p99r)} | serve p50 {ms(p50s)} p99 {ms(p99s)} | "
          f"p50 ratio {p50s / p50r:.2f}x (goal <= 1.10), p99 ratio {p99s / p99r:.2f}x")
    print(f"throughput c=8 raw {raw_tput:.2f} req/s | serve {srv_tput:.2f} req/s | "
          f"ratio {srv_tput / raw_tput:.2f}x (goal >= 0.95)")


if __name__ == "__main__":
    main()

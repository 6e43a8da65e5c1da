"""`make soak` / `make test-faults`: load through the Lambda path of a private native stack, then each of its
processes SIGKILLed under that load.

A stack of its own (`dogops up --fresh` on free loopback ports, state in --state-dir) so that it never meets the
user's. A function like the stack's own front (the project's prediction function, its package and role, reserved
concurrency = --concurrency) is invoked with real boto3 `lambda.invoke` calls by --concurrency threads, each call a
photo in and the endpoint's top-5 out. Each logical request is retried by the client (an explicit bounded loop:
RETRY_WINDOW_S, backoff up to 2 s) until it gets a 200 with 5 predictions; a request that never does is *lost*.

1. warm-up until as many requests as clients have been answered (the Lambda workers' cold starts), then steady load for --seconds;
   every process's RSS (per role: supervisor, emulator, gateway, the Lambda workers, the
   model server and its workers) at its start and end; with --rss-limit, the model server's growth over
   that limit (percent) fails the run;
2. under the same load, each of --kills SIGKILLed in turn: the recovery time is from the kill to the first
   attempt started after it that succeeds; the next kill waits until the process is back;
3. the state is intact: both functions, the endpoint InService, every bucket object as before (a marker too);
4. `dogops down`, then any process still carrying this stack's state dir is SIGKILLed and counted.

Prints a table and writes the figures as JSON (<state-dir>/faults/soak-<time>.json); exits 1 if any check failed.

Usage: python benchmarks/soak.py [--seconds 600] [--concurrency 16] [--kills emulator,gateway,...] [--rss-limit 5]
"""

import argparse
import base64
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
KILLS = ("emulator", "gateway", "serving", "serving-worker", "lambda-worker", "supervisor")
RETRY_WINDOW_S = 240  # a logical request is retried this long (longer than any recovery seen: emulator ~35 s)
KILL_TIMEOUT_S = 300  # a process not back in this long is reported as not recovered
WARMUP_S = 300  # at most this long for every client's first answer (each Lambda worker's cold start)
FUNCTION = "dogops-soak"
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """A private native stack: `dogops up --fresh` with its own ports and state dir, read through `dogops env`."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_", "SAGEMAKER_", "DOGOPS_"))}
        self.env.update(DOGOPS_STATE_DIR=str(state_dir), DOGOPS_EMULATOR_PORT=str(free_port()),
                        DOGOPS_GATEWAY_PORT=str(free_port()), DOGOPS_SERVING_PORT=str(free_port()))
        self.exports: dict[str, str] = {}
        self.seen: dict[int, int] = {}  # every process of the stack seen, with its start time

    def dogops(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dogops"), *args], env=self.env, cwd=ROOT, text=True, capture_output=True,
                              timeout=timeout)

    def up(self) -> float:
        started = time.monotonic()
        result = self.dogops("up", "--fresh", timeout=900)
        if result.returncode:
            raise SystemExit(f"dogops up failed:\n{result.stdout}\n{result.stderr}")
        lines = self.dogops("env").stdout.splitlines()
        self.exports = dict(shlex.split(line)[1].split("=", 1) for line in lines if line.startswith("export "))
        return time.monotonic() - started

    def state(self) -> dict:
        try:
            return json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def client(self, service: str, **config):
        url = self.exports.get("AWS_ENDPOINT_URL_" + service.upper().replace("-", "_"), self.exports["AWS_ENDPOINT_URL"])
        return boto3.client(service, endpoint_url=url, region_name=self.exports["AWS_DEFAULT_REGION"],
                            aws_access_key_id=self.exports["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.exports["AWS_SECRET_ACCESS_KEY"], config=Config(**config))

    def track(self) -> set[int]:
        """The stack's live processes (every role's), each remembered with its start time; returned."""
        table, found = roles(self)
        live = set().union(*found.values())
        for pid in live:
            self.seen.setdefault(pid, table[pid][3])
        return live

    def leftovers(self) -> list[int]:
        """Processes once tracked that still run (the same start time: not a reused pid), and any whose environment
        carries this stack's state dir."""
        mark, table = f"DOGOPS_STATE_DIR={self.dir}".encode(), _table()
        found = {pid for pid, started in self.seen.items() if pid in table and table[pid][3] == started}
        for pid in table.keys() - {os.getpid()}:
            try:
                if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.add(pid)
            except OSError:
                continue
        return sorted(found)


def _stat(pid: int) -> list[str]:
    return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()


def _table() -> dict[int, tuple[int, bytes, int]]:
    """Every live process: pid -> (parent, command line, RSS bytes, start time)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = _stat(int(entry.name))
                if stat[0] != "Z":
                    table[int(entry.name)] = (int(stat[1]), (entry / "cmdline").read_bytes(),
                                              int((entry / "statm").read_text().split()[1]) * PAGE, int(stat[19]))
            except (OSError, ValueError, IndexError):
                continue
    return table


def _tree(table: dict, pid: int | None) -> set[int]:
    found, frontier = set(), {pid} & table.keys()
    while frontier:
        found |= frontier
        frontier = {p for p, (parent, *_) in table.items() if parent in frontier} - found
    return found


def roles(stack: Stack) -> tuple[dict, dict[str, set[int]]]:
    """The process table, and the stack's processes by role; a Lambda worker is a gateway descendant that is no
    gateway (gunicorn) process."""
    table, state = _table(), stack.state()
    children = state.get("children", {})
    serving = _tree(table, children.get("serving"))
    gateway = _tree(table, children.get("gateway"))
    lambdas = {p for p in gateway if b"services.gateway" not in table[p][1] and b"gunicorn" not in table[p][1]}
    return table, {"supervisor": {state.get("supervisor")} & table.keys(),
                   "emulator": _tree(table, children.get("emulator")) - serving, "gateway": gateway - lambdas,
                   "lambda workers": lambdas, "model server": serving}


def rss(stack: Stack) -> dict[str, dict]:
    stack.track()
    table, found = roles(stack)
    return {role: {"processes": len(pids), "rss_mib": round(sum(table[p][2] for p in pids) / 2**20, 1)}
            for role, pids in found.items()}


def candidates(stack: Stack, name: str) -> list[int]:
    """The processes ``name`` (one of KILLS) may be: the one pid, or every serve worker / top Lambda worker."""
    state = stack.state()
    if name == "supervisor":
        return [state["supervisor"]] if state.get("supervisor") else []
    if name in ("emulator", "gateway", "serving"):
        pid = state.get("children", {}).get(name)
        return [pid] if pid else []
    table, found = roles(stack)
    if name == "serving-worker":
        return sorted(p for p in found["model server"] if table[p][0] == state["children"].get("serving"))
    return sorted(p for p in found["lambda workers"] if table[p][0] not in found["lambda workers"])


def deploy(stack: Stack, concurrency: int) -> None:
    """The project's prediction function as FUNCTION, with the stack function's role, reserved ``concurrency``."""
    from dogops import lambda_package

    lam = stack.client("lambda", retries={"mode": "standard", "max_attempts": 5})
    own = lam.get_function(FunctionName=stack.exports["DOGOPS_FUNCTION_NAME"])["Configuration"]
    package, _ = lambda_package.function_zip()
    lam.create_function(FunctionName=FUNCTION, Role=own["Role"], Handler=own["Handler"], Runtime=own["Runtime"],
                        Timeout=own["Timeout"], MemorySize=own["MemorySize"], Code={"ZipFile": package},
                        Environment=own["Environment"])
    lam.get_waiter("function_active_v2").wait(FunctionName=FUNCTION)
    lam.put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=concurrency)


class Load:
    """``threads`` clients, each sending one logical request after another until stopped."""

    def __init__(self, stack: Stack, threads: int, photo: bytes):
        self.lam = stack.client("lambda", retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5,
                                read_timeout=100, max_pool_connections=threads)
        self.payload = json.dumps({"image": base64.b64encode(photo).decode()}).encode()
        self.attempts: list[tuple[float, float, bool, str]] = []  # (start, end, ok, error kind)
        self.requests: list[tuple[float, float, bool, int]] = []  # (start, end, ok, attempts)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]

    def _attempt(self) -> str:
        """'' when the function answered 200 with 5 predictions, else what went wrong."""
        try:
            answer = self.lam.invoke(FunctionName=FUNCTION, Payload=self.payload)
        except ClientError as exc:
            return f"{exc.response['ResponseMetadata'].get('HTTPStatusCode')} {exc.response['Error'].get('Code')}"
        except BotoCoreError as exc:
            return type(exc).__name__
        body = json.loads(answer["Payload"].read())
        if answer.get("FunctionError"):
            return f"FunctionError {body.get('errorType')}"
        if body.get("statusCode") != 200:
            return f"function {body.get('statusCode')}"
        return "" if len(json.loads(body["body"])["predictions"]) == 5 else "not 5 predictions"

    def _client(self) -> None:
        while not self.stop.is_set():
            started, tries, error = time.monotonic(), 0, "x"
            while error and time.monotonic() - started < RETRY_WINDOW_S:
                if tries:
                    time.sleep(min(2.0, 0.1 * 2 ** tries) * random.uniform(0.5, 1))
                tries, begun = tries + 1, time.monotonic()
                error = self._attempt()
                self.attempts.append((begun, time.monotonic(), not error, error))
            self.requests.append((started, time.monotonic(), not error, tries))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def warm(self) -> float:
        """Seconds until as many requests as there are clients have finished (at most WARMUP_S)."""
        started = time.monotonic()
        while len(self.requests) < len(self.threads) and time.monotonic() - started < WARMUP_S:
            time.sleep(0.2)
        return time.monotonic() - started

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(RETRY_WINDOW_S + 120)

    def summary(self, since: float, until: float) -> dict:
        """Requests answered in [since, until) (retried: more than one attempt; lost: none succeeded), the attempts
        answered then that failed, by kind, and the p50/p99 of those that succeeded."""
        requests = [r for r in self.requests if since <= r[1] < until]
        attempts = [a for a in self.attempts if since <= a[1] < until]
        latencies = sorted(end - start for start, end, ok, _ in attempts if ok)
        kinds: dict[str, int] = {}
        for *_, kind in attempts:
            if kind:
                kinds[kind] = kinds.get(kind, 0) + 1
        quantile = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000)  # noqa: E731
        return {"requests": len(requests), "lost": sum(not ok for *_, ok, _ in requests),
                "retried": sum(tries > 1 for *_, tries in requests), "failed_attempts": sum(kinds.values()),
                "errors": kinds, "p50_ms": quantile(0.5) if latencies else None,
                "p99_ms": quantile(0.99) if latencies else None}

    def first_success_after(self, moment: float) -> float | None:
        ends = [end for start, end, ok, _ in self.attempts if ok and start > moment]
        return min(ends) - moment if ends else None


def snapshot(stack: Stack) -> dict:
    """What the user would check: both functions, the endpoint's status, the bucket's objects and ETags."""
    lam, s3 = stack.client("lambda"), stack.client("s3")
    bucket = stack.exports["DOGOPS_BUCKET"]
    objects = {o["Key"]: o["ETag"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
               for o in page.get("Contents", [])}
    functions = {name: lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
                 for name in (FUNCTION, stack.exports["DOGOPS_FUNCTION_NAME"])}
    endpoint = stack.client("sagemaker").describe_endpoint(EndpointName=stack.exports["DOGOPS_ENDPOINT_NAME"])
    return {"functions": functions, "endpoint": endpoint["EndpointStatus"], "objects": objects}


def kill_in_turn(stack: Stack, load: Load, kills: list[str]) -> list[dict]:
    results = []
    for name in kills:
        pool = candidates(stack, name)
        if not pool:
            results.append({"killed": name, "pid": None, "recovery_s": None, "note": "no such process found"})
            continue
        pid, restarts, processes = pool[0], stack.state().get("restarts", {}).get(name, 0), stack.track()
        before = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        recovery = None
        while recovery is None and time.monotonic() - before < KILL_TIMEOUT_S:
            time.sleep(0.2)
            recovery = load.first_success_after(before)
        back = _wait_back(stack, name, pid, len(pool), before)
        note = "" if back else "not replaced in time"
        if name == "supervisor":
            note = ("not restarted: nothing supervises the native supervisor (its children keep serving; "
                    "`dogops down` stops them)") if not back else "restarted"
        elif name == "emulator" and stack.state().get("restarts", {}).get(name, 0) <= restarts:
            note = "the supervisor did not count a restart"
        results.append({"killed": name, "pid": pid, "recovery_s": None if recovery is None else round(recovery, 1),
                        "replaced": back, "note": note, "processes_before": len(processes),
                        "orphans": _orphans(stack, processes), **load.summary(before, time.monotonic())})
        print(f"  {name} (pid {pid}) SIGKILLed: first success after {results[-1]['recovery_s']} s, "
              f"{results[-1]['orphans']} of the stack's {len(processes)} processes left outside it"
              f"{'; ' + note if note else ''}", flush=True)
    return results


def _orphans(stack: Stack, before: set[int]) -> int:
    """How many of the processes the stack had before a kill still run outside every role's tree (orphaned)."""
    now, alive = stack.track(), set(stack.leftovers())
    return len((before & alive) - now)


def _wait_back(stack: Stack, name: str, pid: int, count: int, since: float) -> bool:
    """Whether ``pid``'s role has a replacement within KILL_TIMEOUT_S (``_replaced``). The supervisor is looked
    at once."""
    while time.monotonic() - since < KILL_TIMEOUT_S:
        pool = candidates(stack, name)
        if name == "supervisor":
            return bool(pool) and pid not in pool and _alive(pool[0])
        if _replaced(stack, name, pid, pool, count):
            time.sleep(2)  # a short settle, so that the next kill does not land on a half-started process
            return True
        time.sleep(0.5)
    return False


def _replaced(stack: Stack, name: str, pid: int, pool: list[int], count: int) -> bool:
    """A new pid in ``pool``: the emulator's with the stack ready again, serve's with a worker forked, as many
    serve workers as before, a Lambda worker again."""
    if pid in pool or len(pool) < (count if name == "serving-worker" else 1):
        return False
    if name == "emulator":
        return stack.state().get("phase") == "ready"
    if name == "serving":
        return bool(candidates(stack, "serving-worker"))
    return True


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def report(figures: dict) -> str:
    steady, lines = figures["steady"], []
    lines.append(f"steady load: {figures['concurrency']} concurrent, {figures['seconds']} s through Lambda "
                 f"{FUNCTION} -> gateway -> endpoint, after a {figures['warmup_s']} s warm-up")
    lines.append(f"  requests {steady['requests']} ({steady['per_s']}/s), lost {steady['lost']}, retried {steady['retried']}, "
                 f"failed attempts {steady['failed_attempts']} {steady['errors'] or ''}, "
                 f"p50 {steady['p50_ms']} ms, p99 {steady['p99_ms']} ms")
    lines.append(f"  {'process':<16}{'count':>6}{'RSS start MiB':>15}{'RSS end MiB':>13}{'growth':>9}")
    for role, start in figures["rss_start"].items():
        end = figures["rss_end"][role]
        growth = f"{(end['rss_mib'] / start['rss_mib'] - 1) * 100:+.1f}%" if start["rss_mib"] else "-"
        lines.append(f"  {role:<16}{end['processes']:>6}{start['rss_mib']:>15}{end['rss_mib']:>13}{growth:>9}")
    if figures["kills"]:
        lines.append(f"  {'killed (SIGKILL)':<16}{'recovery s':>11}{'requests':>10}{'retried':>9}{'lost':>6}"
                     f"{'orphans':>9}  failed attempts / note")
        for kill in figures["kills"]:
            lines.append(f"  {kill['killed']:<16}{str(kill['recovery_s']):>11}{kill.get('requests', 0):>10}"
                         f"{kill.get('retried', 0):>9}{kill.get('lost', 0):>6}{kill.get('orphans', '-'):>9}  {kill.get('errors') or ''} "
                         f"{kill['note']}".rstrip())
    lines.append(f"state intact: {figures['state_intact']}; processes left after down: {figures['leftovers']}")
    lines += [f"  left: {command}" for command in figures["leftover_commands"]]
    lines.append("FAILED: " + "; ".join(figures["failures"]) if figures["failures"] else "all checks passed")
    return "\n".join(lines)


def failures(figures: dict, rss_limit: float | None) -> list[str]:
    found = []
    if figures["steady"]["failed_attempts"] or figures["steady"]["lost"]:
        found.append(f"steady load had errors: {figures['steady']['errors']}, {figures['steady']['lost']} lost")
    if figures["lost"]:
        found.append(f"{figures['lost']} retried requests lost")
    found += [f"{k['killed']}: no success within {KILL_TIMEOUT_S} s" for k in figures["kills"] if k["recovery_s"] is None]
    found += [f"{k['killed']}: not replaced" for k in figures["kills"]
              if k["killed"] != "supervisor" and not k.get("replaced")]
    if not figures["state_intact"]:
        found.append("state not intact after the kills")
    if figures["leftovers"]:
        found.append(f"{figures['leftovers']} processes were left after dogops down")
    start, end = figures["rss_start"]["model server"]["rss_mib"], figures["rss_end"]["model server"]["rss_mib"]
    if rss_limit is not None and end > start * (1 + rss_limit / 100):
        found.append(f"model server RSS grew {start} -> {end} MiB, over {rss_limit}%")
    return found


def run(args) -> dict:
    stack = Stack(args.state_dir.absolute())
    figures: dict = {"concurrency": args.concurrency, "seconds": args.seconds, "kills": [], "state_dir": str(stack.dir)}
    load = None
    try:
        figures["up_s"] = round(stack.up(), 1)
        print(f"private stack up in {figures['up_s']} s (state {stack.dir})", flush=True)
        deploy(stack, args.concurrency)
        stack.client("s3").put_object(Bucket=stack.exports["DOGOPS_BUCKET"], Key="soak/marker", Body=b"kept")
        before = snapshot(stack)
        load = Load(stack, args.concurrency, (stack.dir / "samples" / "dog.jpg").read_bytes())
        load.start()
        figures["warmup_s"] = round(load.warm(), 1)
        figures["rss_start"], began = rss(stack), time.monotonic()
        time.sleep(args.seconds)
        figures["rss_end"], ended = rss(stack), time.monotonic()
        figures["steady"] = load.summary(began, ended)
        figures["steady"]["per_s"] = round(figures["steady"]["requests"] / (ended - began), 2)
        print(f"steady load done: {figures['steady']['requests']} requests", flush=True)
        figures["kills"] = kill_in_turn(stack, load, args.kills)
        load.finish()
        figures["all_requests"] = load.summary(0, time.monotonic())
        figures["lost"] = figures["all_requests"]["lost"]
        after = snapshot(stack)
        figures["state_intact"] = after == before
        if after != before:
            figures["state_diff"] = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    finally:
        if load:
            load.stop.set()
        down = stack.dogops("down", timeout=180)
        print(down.stdout.strip(), flush=True)
        waited = time.monotonic()
        while (left := stack.leftovers()) and time.monotonic() - waited < 10:  # a moment for those still exiting
            time.sleep(0.5)
        table = _table()
        figures["leftover_commands"] = [table[pid][1].replace(b"\0", b" ").decode(errors="replace")[:160]
                                        for pid in left if pid in table]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        figures["leftovers"] = len(left)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600, help="steady load after the warm-up (default 600)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kills", type=lambda s: [k for k in s.split(",") if k], default=list(KILLS),
                        help=f"comma-separated, killed in this order (default all: {','.join(KILLS)}); '' for none")
    parser.add_argument("--rss-limit", type=float, help="fail if the model server's RSS grows more (percent)")
    parser.add_argument("--state-dir", type=Path, help="the private stack's state dir (default: a temporary one)")
    args = parser.parse_args()
    if unknown := set(args.kills) - set(KILLS):
        parser.error(f"unknown --kills {', '.join(sorted(unknown))}; choose from {', '.join(KILLS)}")
    args.kills = [k for k in KILLS if k in args.kills]  # the supervisor last: nothing brings it back
    if args.seconds <= 0 or args.concurrency < 1:
        parser.error("--seconds and --concurrency must be positive")
    args.state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="dogops-soak-"))
    figures = run(args)
    figures["failures"] = failures(figures, args.rss_limit)
    out = args.state_dir / "faults" / time.strftime("soak-%Y%m%dT%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(report(figures))
    print(f"figures: {out}")
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

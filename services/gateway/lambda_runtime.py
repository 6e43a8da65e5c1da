"""Runs the Lambda functions deployed on the emulator, as the Lambda service does.

- configuration: ``GetFunction`` (and ``GetFunctionConcurrency`` when it names no reservation) on the emulator,
  reused for a second (an update reaches the next invocations after that, as AWS applies them after a moment);
- code: the deployed zip from ``GetFunction``'s pre-signed ``Code.Location`` on the emulator, checked
  against ``CodeSha256`` and unpacked once per hash;
- execution environments: warm worker processes, one invocation at a time each: AWS's runtime interface client
  (``awslambdaric``) in an isolated interpreter that sees the package, its layers and the runtime's packages only
  (``lambda_sandbox``), talking to a Runtime API of its own (``runtime_api``), started with Lambda's environment
  and the function role's credentials (STS ``AssumeRole`` on the emulator), retired when the configuration or
  code changes;
- concurrency: reserved concurrency N admits N invocations at once and throttles the rest;
  without it, at most ``DOGOPS_LAMBDA_MAX_WORKERS`` (8) run at once and the others wait;
- timeouts: a worker past the function's timeout is killed (the next invocation starts another).

Worker logs (Lambda's START/END/REPORT lines around the function's output) go to CloudWatch Logs on the
emulator and to ``DOGOPS_LOG_DIR/lambda/<function>/<stream>.log`` (``lambda_output``).
"""

import atexit
import base64
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests
from botocore.exceptions import BotoCoreError, ClientError

from ..observability import lambda_metrics
from ..stack import settings
from . import lambda_sandbox
from .emulator import Recent, client
from .lambda_output import Output
from .runtime_api import Event, Exited, Result, RuntimeApi

MAX_WORKERS = int(os.environ.get("DOGOPS_LAMBDA_MAX_WORKERS") or 8)
INIT_TIMEOUT = 10.0  # s: Lambda's init phase; a slower init gets the function's timeout instead
MAX_AGE = 45 * 60  # s: a worker is replaced before its role credentials (1 h) expire
MEMORY_POLL = 0.05  # s: how often a worker's resident memory is compared with its MemorySize


class ServiceError(Exception):
    """A Lambda service error: the HTTP status, ``x-amzn-ErrorType``, message and modeled fields."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **fields):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.fields = status, code, message, headers, fields


def function_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{settings.REGION}:{settings.ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


@dataclass(frozen=True)
class Function:
    """What an invocation needs from the function's configuration."""

    name: str
    version: str
    handler: str
    runtime: str
    timeout: int  # s
    memory: int  # MB
    role: str
    code_sha: str  # base64 SHA-256 of the zip, as the API reports it
    variables: tuple  # (name, value) pairs
    reserved: int | None  # reserved concurrency, None when unset
    layers: tuple = ()  # layer version ARNs, in the configuration's order
    tmp_mb: int = 512  # EphemeralStorage: the size of its /tmp (TMPDIR)
    boot: str = ""  # the emulator's boot id (X-Dogops-Boot-Id): a restarted emulator forgot the role's sessions

    @property
    def environment_key(self) -> tuple:
        """Workers started for one key serve every invocation with that key."""
        return (self.version, self.handler, self.runtime, self.timeout, self.memory, self.role, self.code_sha,
                self.variables, self.layers, self.tmp_mb, self.boot)


@dataclass
class Outcome:
    """An invocation's answer: the payload, and whether it is a function error."""

    body: bytes
    content_type: str = "application/json"
    error: bool = False
    log: bytes = b""  # this invocation's log lines


CONFIG_SECONDS = 1.0  # a configuration is reused this long (AWS too takes a moment to apply an update)
_configs = Recent(CONFIG_SECONDS)


def describe(name: str, qualifier: str | None) -> Function:
    """The function's configuration on the emulator, reused for ``CONFIG_SECONDS``; 404 when unknown."""
    return _configs.get((name, qualifier), lambda: _lookup(name, qualifier))


def _lookup(name: str, qualifier: str | None) -> Function:
    lam = client("lambda")
    try:
        found = lam.get_function(FunctionName=name, **({"Qualifier": qualifier} if qualifier else {}))
        reserved = (found.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
        if reserved is None:  # GetFunction leaves out a reservation of 0 on moto: ask
            reserved = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            raise ServiceError(404, "ResourceNotFoundException", f"Function not found: {function_arn(name, qualifier)}",
                               Type="User") from None
        raise ServiceError(500, "ServiceException", f"GetFunction on the emulator failed: {e}") from None
    except BotoCoreError as e:
        raise ServiceError(500, "ServiceException", f"the emulator is unreachable: {e}") from None
    config = found["Configuration"]
    variables = (config.get("Environment") or {}).get("Variables") or {}
    return Function(name=config["FunctionName"], version=config.get("Version") or "$LATEST",
                    handler=config.get("Handler") or "", runtime=config.get("Runtime") or "python3.12",
                    timeout=int(config.get("Timeout") or 3), memory=int(config.get("MemorySize") or 128),
                    role=config["Role"], code_sha=config["CodeSha256"], variables=tuple(sorted(variables.items())),
                    reserved=reserved, layers=tuple(layer["Arn"] for layer in config.get("Layers") or []),
                    tmp_mb=int((config.get("EphemeralStorage") or {}).get("Size") or 512),
                    boot=found["ResponseMetadata"]["HTTPHeaders"].get("x-dogops-boot-id", ""))


class CodeCache:
    """Deployed zips unpacked once per ``CodeSha256`` under ``root/code``, and each list of layers once into its
    ``/opt`` under ``root/opt`` (a layer version never changes); both read-only."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def path(self, fn: Function) -> Path:
        target = self.root / "code" / base64.b64decode(fn.code_sha).hex()
        with self._lock:
            if not target.is_dir():
                self._unpack([self._download(fn)], target)
        return target

    def opt(self, fn: Function) -> Path:
        """The function's ``/opt``: its layers unpacked in their order, a later one's files over an earlier one's."""
        target = self.root / "opt" / hashlib.sha256("\n".join(fn.layers).encode()).hexdigest()[:32]
        with self._lock:
            if not target.is_dir():
                self._unpack([self._layer(arn) for arn in fn.layers], target)
        return target

    @staticmethod
    def _download(fn: Function) -> bytes:
        try:  # as AWS hands the code out: GetFunction's pre-signed Code.Location
            qualifier = {"Qualifier": fn.version} if fn.version != "$LATEST" else {}
            url = client("lambda").get_function(FunctionName=fn.name, **qualifier)["Code"]["Location"]
            response = requests.get(url, timeout=60)
            response.raise_for_status()
        except (requests.RequestException, ClientError, BotoCoreError, KeyError) as e:
            raise ServiceError(500, "ServiceException", f"could not fetch the code of {fn.name}: {e}") from None
        digest = base64.b64encode(hashlib.sha256(response.content).digest()).decode()
        if digest != fn.code_sha:  # changed since GetFunction, or a published version's older code
            raise ServiceError(409, "ResourceConflictException",
                               f"The code of {fn.name} is not the one with CodeSha256 {fn.code_sha}", Type="User")
        return response.content

    @staticmethod
    def _layer(arn: str) -> bytes:
        """A layer version's zip (``arn:aws:lambda:<region>:<account>:layer:<name>:<version>``), as GetLayerVersion
        hands it out, checked against its ``CodeSha256``."""
        try:
            name, version = arn.split(":")[6:8]
            content = client("lambda").get_layer_version(LayerName=name, VersionNumber=int(version))["Content"]
            response = requests.get(content["Location"], timeout=60)
            response.raise_for_status()
        except (requests.RequestException, ClientError, BotoCoreError, KeyError, ValueError) as e:
            raise ServiceError(500, "ServiceException", f"could not fetch the layer {arn}: {e}") from None
        if base64.b64encode(hashlib.sha256(response.content).digest()).decode() != content["CodeSha256"]:
            raise ServiceError(500, "ServiceException", f"the layer {arn} is not the one with its CodeSha256")
        return response.content

    def _unpack(self, archives: list[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
        try:
            for data in archives:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    archive.extractall(partial)  # member names with .. or a leading / stay inside
        except zipfile.BadZipFile as e:
            shutil.rmtree(partial)
            raise ServiceError(502, "InvalidZipFileException", f"Could not unzip the deployment package: {e}",
                               Type="User") from None
        partial.chmod(0o755)  # mkdtemp's 0700, as a zip's root would not be
        lambda_sandbox.read_only(partial)
        partial.rename(target)


def _exit_reason(returncode: int) -> str:
    if returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        return f"Runtime exited with error: signal: {signal.strsignal(-returncode).lower()}"
    return f"Runtime exited with error: exit status {returncode}"


def _memory_mb(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory (``VmRSS``), or its peak (``VmHWM``: Lambda's Max Memory Used), in MB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return math.ceil(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return 0


class Worker:
    """An execution environment: ``awslambdaric`` in an isolated interpreter (``lambda_sandbox``), talking to a
    Runtime API of its own (``runtime_api``); its stdout and stderr are its log (``Output``)."""

    def __init__(self, fn: Function, code_dir: Path, opt_dir: Path, interpreter: lambda_sandbox.Interpreter,
                 log_dir: Path, initialization: str = "on-demand"):
        self.key, self.started = fn.environment_key, time.monotonic()
        self.stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{fn.version}]{uuid.uuid4().hex}"
        self.runtime_dir = interpreter.runtime_dir
        self.api = RuntimeApi()
        self.tmp = Path(tempfile.mkdtemp(prefix="dogops-lambda-tmp-"))
        self.output = Output(log_dir / f"{self.stream.rsplit(']', 1)[1]}.log", f"/aws/lambda/{fn.name}", self.stream)
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                lambda_sandbox.contained(lambda_sandbox.command(interpreter, opt_dir), self.tmp, fn.tmp_mb, code_dir,
                                         opt_dir), cwd=code_dir, env=self._environment(fn, code_dir, initialization),
                stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, start_new_session=True)
        except (OSError, ServiceError):  # no process: nothing of this environment stays
            os.close(read_fd)
            self.api.close()
            self.output.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        finally:
            os.close(write_fd)
        self.output.follow(read_fd)
        self._init_ms: float | None = None
        self.memory, self.out_of_memory, self._peak = fn.memory, False, 0
        threading.Thread(target=self._watch, name=f"lambda-worker-{self.process.pid}", daemon=True).start()

    def _watch(self) -> None:
        """Until the process ends: kill it when its memory passes the function's MemorySize, as Lambda does."""
        while True:
            try:
                self.process.wait(timeout=MEMORY_POLL)
                break
            except subprocess.TimeoutExpired:
                self._peak = max(self._peak, _memory_mb(self.process.pid, "VmHWM"))
                if _memory_mb(self.process.pid) > self.memory:
                    self.out_of_memory = True
                    try:
                        os.killpg(self.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.api.exited()

    def _environment(self, fn: Function, code_dir: Path, initialization: str) -> dict:
        try:
            credentials = client("sts").assume_role(RoleArn=fn.role,
                                                    RoleSessionName=f"lambda-{fn.name}"[:64])["Credentials"]
        except (ClientError, BotoCoreError) as e:
            raise ServiceError(500, "ServiceException", f"could not assume the role of {fn.name}: {e}") from None
        return {
            "PATH": os.environ.get("PATH", os.defpath), "LANG": "en_US.UTF-8", "TZ": "UTC",
            "TMPDIR": str(self.tmp),
            "AWS_ENDPOINT_URL": settings.emulator_url(), "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": settings.gateway_url(),
            **dict(fn.variables),
            "_HANDLER": fn.handler, "LAMBDA_TASK_ROOT": str(code_dir), "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_REGION": settings.REGION, "AWS_DEFAULT_REGION": settings.REGION,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}", "AWS_LAMBDA_INITIALIZATION_TYPE": initialization,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name, "AWS_LAMBDA_FUNCTION_VERSION": fn.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}", "AWS_LAMBDA_LOG_STREAM_NAME": self.stream,
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_ACCESS_KEY": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
        }

    def init(self, fn: Function) -> Outcome | None:
        """Wait until the runtime asks for its first event; the init error's outcome, or None when ready."""
        status = ""
        try:
            error = self.api.wait_ready(self.started + max(INIT_TIMEOUT, fn.timeout))
        except TimeoutError:
            self.kill()
            error, status = _document(_timeout_document("", fn.timeout)), "timeout"
        except Exited:
            error = _document(self._exit_document(""))
        self._init_ms = (time.monotonic() - self.started) * 1000
        if error is None:
            return None
        error_type = error.error_type or json.loads(error.body).get("errorType")
        self.output.runtime_line(f"INIT_REPORT Init Duration: {self._init_ms:.2f} ms\tPhase: init\tStatus: "
                                 f"{status or 'error'}\tError Type: {error_type}\n")
        return Outcome(error.body, error=True, log=self.output.invocation_log())

    def invoke(self, fn: Function, request_id: str, payload: str, arn: str, client_context: dict | None) -> Outcome:
        """Run one invocation; on timeout or exit the worker is dead afterwards (see ``alive``)."""
        self.output.runtime_line(f"START RequestId: {request_id} Version: {fn.version}\n")
        began = time.monotonic()
        status = ""
        event = Event(request_id, payload.encode(), arn, int(time.time() * 1000) + fn.timeout * 1000,
                      json.dumps(client_context) if client_context is not None else None)
        try:
            result = self.api.invoke(event, began + fn.timeout)
            if _memory_mb(self.process.pid, "VmHWM") > fn.memory:  # over it between two looks of the watcher
                self.out_of_memory = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                raise Exited
        except TimeoutError:
            self.kill()
            result, status = _document(_timeout_document(request_id, fn.timeout)), "\tStatus: timeout"
        except Exited:
            result = _document(self._exit_document(request_id))
            status = f"\tStatus: error\tError Type: {result.error_type}"
        millis = (time.monotonic() - began) * 1000
        self.output.drain()
        init = f"\tInit Duration: {self._init_ms:.2f} ms" if self._init_ms is not None else ""
        self._init_ms = None  # reported with the first invocation only
        self.output.runtime_line(f"END RequestId: {request_id}\n")
        self.output.runtime_line(
            f"REPORT RequestId: {request_id}\tDuration: {millis:.2f} ms\tBilled Duration: {math.ceil(millis)} ms\t"
            f"Memory Size: {fn.memory} MB\tMax Memory Used: {self.max_memory_used()} MB{init}{status}\t\n")
        outcome = Outcome(result.body, "application/json" if result.error_type else result.content_type,
                          error=result.error_type is not None)
        outcome.log = self.output.invocation_log()
        region, qualifier = _region_and_qualifier(arn)
        lambda_metrics.invoked(region, fn.name, millis, outcome.error, qualifier)
        return outcome

    def max_memory_used(self) -> int:
        """Lambda's Max Memory Used: the peak resident memory, in MB, at most MemorySize."""
        self._peak = max(self._peak, _memory_mb(self.process.pid, "VmHWM"))
        return min(self._peak, self.memory)

    def unreported_init(self) -> None:
        """Its init happened ahead of any invocation (provisioned): no Init Duration in its first REPORT."""
        self._init_ms = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.returncode is None:  # not reaped: its pid, and so its group id, cannot be reused yet
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the handler's own children too
            except ProcessLookupError:
                pass
            self.process.wait()
        self.api.close()
        self.output.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _exit_document(self, request_id: str) -> dict:
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipe but lingers
            self.kill()
            returncode = self.process.returncode
        self.kill()
        return {"errorType": "Runtime.OutOfMemory" if self.out_of_memory else "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: {_exit_reason(returncode)}"}


def _document(document: dict) -> Result:
    return Result(json.dumps(document).encode(), "application/json", document["errorType"])


def _timeout_document(request_id: str, timeout: int) -> dict:
    return {"errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"}


class _Slots:
    """One function's admitted invocations and idle workers."""

    def __init__(self):
        self.ready = threading.Condition()
        self.active = 0
        self.idle: list[Worker] = []
        self.provisioned: dict[tuple, list[Worker]] = {}  # per environment key: workers kept initialised


def _region_and_qualifier(arn: str) -> tuple[str, str | None]:
    """The region and the qualifier (version or alias; None) of an invoked function's ARN."""
    parts = arn.split(":")
    return parts[3], parts[7] if len(parts) > 7 else None


class Runtime:
    """Every function's workers, in this process."""

    def __init__(self, root: Path, log_dir: Path):
        self.code = CodeCache(root)
        self.runtime_root = root / "runtime"
        self._interpreters: dict[str, lambda_sandbox.Interpreter] = {}  # per configured runtime
        self.log_dir = log_dir
        self._slots: dict[str, _Slots] = {}
        self._lock = threading.Lock()
        self._mismatches: set[tuple[str, str, str]] = set()  # (function, runtime, runs) already stated in the log

    def invoke(self, fn: Function, request_id: str, payload: str, arn: str,
               client_context: dict | None = None) -> Outcome:
        """Run ``payload`` (JSON text) on a warm or new worker; ``ServiceError`` 429 past reserved concurrency."""
        with self._lock:
            slots = self._slots.setdefault(fn.name, _Slots())
        region, qualifier = _region_and_qualifier(arn)
        try:
            worker, retired = self._admit(slots, fn)
        except ServiceError:
            lambda_metrics.throttled(region, fn.name, qualifier)
            raise
        with self._lock:
            everyone = sum(s.active for s in self._slots.values())
        lambda_metrics.concurrency(region, fn.name, slots.active, everyone)
        for old in retired:
            old.kill()
        try:
            if worker is None:
                worker = self.start(fn)
                failure = worker.init(fn)
                if failure is not None:
                    worker.kill()
                    return failure
            return worker.invoke(fn, request_id, payload, arn, client_context)
        finally:
            self._release(slots, fn, worker)

    def start(self, fn: Function, initialization: str = "on-demand") -> Worker:
        """A new worker for ``fn`` (its init not waited for)."""
        with self._lock:
            interpreter = self._interpreters.get(fn.runtime)
            if interpreter is None:
                interpreter = lambda_sandbox.interpreter(fn.runtime, self.runtime_root)
                self._interpreters[fn.runtime] = interpreter
        worker = Worker(fn, self.code.path(fn), self.code.opt(fn), interpreter, self.log_dir / fn.name,
                        initialization)
        line = lambda_sandbox.mismatch(fn.runtime, interpreter.runs)
        with self._lock:
            first = line is not None and (fn.name, fn.runtime, interpreter.runs) not in self._mismatches
            if first:
                self._mismatches.add((fn.name, fn.runtime, interpreter.runs))
        if first:
            worker.output.runtime_line(line)
        return worker

    def mismatches(self) -> list[dict]:
        """The functions run by another Python than their configured runtime, as stated in their logs."""
        with self._lock:
            return [{"function": name, "runtime": runtime, "runs_on": runs}
                    for name, runtime, runs in sorted(self._mismatches)]

    @staticmethod
    def _admit(slots: _Slots, fn: Function) -> tuple[Worker | None, list[Worker]]:
        limit = MAX_WORKERS if fn.reserved is None else fn.reserved
        with slots.ready:
            while slots.active >= limit:
                if fn.reserved is not None:
                    raise ServiceError(429, "TooManyRequestsException", "Rate Exceeded.", {"Retry-After": "1"},
                                       Type="User", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
                slots.ready.wait()
            slots.active += 1
            now = time.monotonic()
            retired = [w for w in slots.idle if not w.alive() or now - w.started >= MAX_AGE
                       or (w.key[0] == fn.version and w.key != fn.environment_key)]  # other versions stay warm
            slots.idle = [w for w in slots.idle if w not in retired]
            match = next((w for w in reversed(slots.idle) if w.key == fn.environment_key), None)
            if match is not None:
                slots.idle.remove(match)
            return match, retired

    @staticmethod
    def _release(slots: _Slots, fn: Function, worker: Worker | None) -> None:
        with slots.ready:
            slots.active -= 1
            keep = worker is not None and worker.alive() and worker.key == fn.environment_key
            if keep:
                slots.idle.append(worker)
            surplus = slots.idle[:max(len(slots.idle) - MAX_WORKERS, 0)]  # the longest idle, past the pool's size
            slots.idle = slots.idle[len(surplus):]
            slots.ready.notify()
        for old in surplus + ([worker] if worker is not None and not keep else []):
            old.kill()

    def provision(self, fn: Function, count: int) -> int:
        """Keep ``count`` initialised workers for ``fn`` (provisioned concurrency: started with
        ``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency``, no Init Duration on their first invocation);
        start the missing ones (waiting for their init), retire extra idle ones; how many are initialised now."""
        with self._lock:
            slots = self._slots.setdefault(fn.name, _Slots())
        with slots.ready:
            kept = [w for w in slots.provisioned.get(fn.environment_key, []) if w.alive()]
            extra = [w for w in kept[count:] if w in slots.idle]
            slots.idle = [w for w in slots.idle if w not in extra]
            kept = [w for w in kept if w not in extra]
            slots.provisioned[fn.environment_key] = kept
        for worker in extra:
            worker.kill()
        for _ in range(count - len(kept)):
            worker = self.start(fn, "provisioned-concurrency")
            if worker.init(fn) is not None:
                worker.kill()
                break
            worker.unreported_init()
            with slots.ready:
                slots.idle.append(worker)
                slots.provisioned[fn.environment_key].append(worker)
                slots.ready.notify()
        with slots.ready:
            return len(slots.provisioned[fn.environment_key])

    def shutdown(self) -> None:
        with self._lock:
            workers = [w for slots in self._slots.values() for w in slots.idle]
        for worker in workers:
            worker.kill()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def mismatches() -> list[dict]:
    """Functions this process ran on another Python than their configured runtime (``dogops status`` shows them)."""
    return _runtime.mismatches() if _runtime is not None else []


def runtime() -> Runtime:
    """This process's runtime, made at first use: code unpacked under a temporary folder removed at exit,
    logs under ``DOGOPS_LOG_DIR`` (default: ``<tmp>/dogops-logs``) ``/lambda/<function>/``."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            root = Path(tempfile.mkdtemp(prefix="dogops-lambda-"))
            logs = os.environ.get("DOGOPS_LOG_DIR") or Path(tempfile.gettempdir()) / "dogops-logs"
            _runtime = Runtime(root, Path(logs) / "lambda")
            atexit.register(_runtime.shutdown)
            atexit.register(lambda_sandbox.remove, root)
        return _runtime

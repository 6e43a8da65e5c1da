"""Runs the Lambda functions deployed on the emulator, as the Lambda service does.

- configuration: ``GetFunction`` (and ``GetFunctionConcurrency`` when it names no reservation) on the emulator,
  reused for a second (an update reaches the next invocations after that, as AWS applies them after a moment);
- code: the deployed zip from ``GetFunction``'s pre-signed ``Code.Location`` on the emulator, checked
  against ``CodeSha256`` and unpacked once per hash;
- execution environments: warm worker processes (``lambda_worker``), one invocation at a time
  each, started with Lambda's environment and the function role's credentials (STS
  ``AssumeRole`` on the emulator), retired when the configuration or code changes;
- concurrency: reserved concurrency N admits N invocations at once and throttles the rest;
  without it, at most ``DOGOPS_LAMBDA_MAX_WORKERS`` (8) run at once and the others wait;
- timeouts: a worker past the function's timeout is killed (the next invocation starts another).

Worker logs (Lambda's START/END/REPORT lines around the function's output) go to
``DOGOPS_LOG_DIR/lambda/<function>/<stream>.log``.
"""

import atexit
import base64
import hashlib
import io
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests
from botocore.exceptions import BotoCoreError, ClientError

from ..stack import settings
from .emulator import Recent, client

MAX_WORKERS = int(os.environ.get("DOGOPS_LAMBDA_MAX_WORKERS") or 8)
INIT_TIMEOUT = 10.0  # s: Lambda's init phase; a slower init gets the function's timeout instead
MAX_AGE = 45 * 60  # s: a worker is replaced before its role credentials (1 h) expire
LOG_TAIL = 4096  # bytes of log returned with X-Amz-Log-Type: Tail
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # where ``services`` is imported from


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

    @property
    def environment_key(self) -> tuple:
        """Workers started for one key serve every invocation with that key."""
        return (self.version, self.handler, self.runtime, self.timeout, self.memory, self.role, self.code_sha,
                self.variables)


@dataclass
class Outcome:
    """An invocation's answer: the payload, and whether it is a function error."""

    body: bytes
    content_type: str = "application/json"
    error: bool = False
    log: bytes = b""  # this invocation's log lines


def _error_outcome(document: dict) -> Outcome:
    return Outcome(json.dumps(document).encode(), error=True)


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
                    reserved=reserved)


class CodeCache:
    """Deployed zips unpacked once per ``CodeSha256`` under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def path(self, fn: Function) -> Path:
        target = self.root / base64.b64decode(fn.code_sha).hex()
        with self._lock:
            if not target.is_dir():
                self._unpack(self._download(fn), target)
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

    def _unpack(self, data: bytes, target: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=self.root, prefix=".unpacking-"))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(partial)  # member names with .. or a leading / stay inside
        except zipfile.BadZipFile as e:
            shutil.rmtree(partial)
            raise ServiceError(502, "InvalidZipFileException", f"Could not unzip the deployment package: {e}",
                               Type="User") from None
        partial.rename(target)


def _exit_reason(returncode: int) -> str:
    if returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        return f"Runtime exited with error: signal: {signal.strsignal(-returncode).lower()}"
    return f"Runtime exited with error: exit status {returncode}"


class Worker:
    """A ``lambda_worker`` process serving one function configuration, talked to over two pipes."""

    def __init__(self, fn: Function, code_dir: Path, log_dir: Path):
        self.key, self.started = fn.environment_key, time.monotonic()
        self.stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{fn.version}]{uuid.uuid4().hex}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.stream.rsplit(']', 1)[1]}.log"
        environment = self._environment(fn, code_dir)
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        self._buffer = b""
        self._init_ms: float | None = None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.gateway.lambda_worker",
                 "--in-fd", str(to_worker_r), "--out-fd", str(from_worker_w)],
                cwd=code_dir, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(to_worker_r, from_worker_w), start_new_session=True)
        os.close(to_worker_r)
        os.close(from_worker_w)

    def _environment(self, fn: Function, code_dir: Path) -> dict:
        try:
            credentials = client("sts").assume_role(RoleArn=fn.role,
                                                          RoleSessionName=f"lambda-{fn.name}"[:64])["Credentials"]
        except (ClientError, BotoCoreError) as e:
            raise ServiceError(500, "ServiceException", f"could not assume the role of {fn.name}: {e}") from None
        return {
            "PATH": os.environ.get("PATH", os.defpath), "LANG": "en_US.UTF-8", "TZ": "UTC",
            "PYTHONPATH": str(SOURCE_ROOT),
            "AWS_ENDPOINT_URL": settings.emulator_url(), "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": settings.gateway_url(),
            **dict(fn.variables),
            "_HANDLER": fn.handler, "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_REGION": settings.REGION, "AWS_DEFAULT_REGION": settings.REGION,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_FUNCTION_NAME": fn.name, "AWS_LAMBDA_FUNCTION_VERSION": fn.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}", "AWS_LAMBDA_LOG_STREAM_NAME": self.stream,
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_ACCESS_KEY": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
        }

    def init(self, fn: Function, request_id: str) -> Outcome | None:
        """Wait for the handler's import; the init error's outcome, or None when ready."""
        try:
            message = self._read(self.started + max(INIT_TIMEOUT, fn.timeout))
        except TimeoutError:
            self.kill()
            message = {"error": _timeout_document(request_id, fn.timeout)}
        except EOFError:
            message = {"error": self._exit_document(request_id)}
        self._init_ms = (time.monotonic() - self.started) * 1000
        if message.get("ready"):
            return None
        self._log(f"INIT_REPORT Init Duration: {self._init_ms:.2f} ms\tPhase: init\tStatus: error\t"
                  f"Error Type: {message['error']['errorType']}\n")
        outcome = _error_outcome(message["error"])
        outcome.log = self._tail(0)
        return outcome

    def invoke(self, fn: Function, request_id: str, payload: str, arn: str, client_context: dict | None) -> Outcome:
        """Run one invocation; on timeout or exit the worker is dead afterwards (see ``alive``)."""
        start = self._log(f"START RequestId: {request_id} Version: {fn.version}\n")
        began = time.monotonic()
        status = ""
        try:
            self._send({"id": request_id, "payload": payload, "arn": arn, "client_context": client_context,
                        "deadline_ms": int(time.time() * 1000) + fn.timeout * 1000})
            message = self._read(began + fn.timeout)
        except TimeoutError:
            self.kill()
            message, status = {"error": _timeout_document(request_id, fn.timeout)}, "\tStatus: timeout"
        except (EOFError, OSError):
            message, status = {"error": self._exit_document(request_id)}, "\tStatus: error"
        millis = (time.monotonic() - began) * 1000
        init = f"\tInit Duration: {self._init_ms:.2f} ms" if self._init_ms is not None else ""
        self._init_ms = None  # reported with the first invocation only
        self._log(f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {millis:.2f} ms\t"
                  f"Billed Duration: {math.ceil(millis)} ms\tMemory Size: {fn.memory} MB{init}{status}\n")
        if "error" in message:
            outcome = _error_outcome(message["error"])
        elif "bytes" in message:
            outcome = Outcome(base64.b64decode(message["bytes"]), "application/unknown")
        else:
            outcome = Outcome(message["json"].encode())
        outcome.log = self._tail(start)
        return outcome

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.returncode is None:  # not reaped: its pid, and so its group id, cannot be reused yet
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the handler's own children too
            except ProcessLookupError:
                pass
            self.process.wait()
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        self._to_worker = self._from_worker = -1

    def _log(self, text: str) -> int:
        """Append a runtime line to the worker's log; the offset where it starts."""
        with open(self.log_path, "ab") as log:
            offset = log.tell()
            log.write(text.encode())
        return offset

    def _tail(self, start: int) -> bytes:
        """The log from ``start`` on, its last ``LOG_TAIL`` bytes."""
        with open(self.log_path, "rb") as log:
            log.seek(max(start, log.seek(0, os.SEEK_END) - LOG_TAIL))
            return log.read()

    def _exit_document(self, request_id: str) -> dict:
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipe but lingers
            self.kill()
            returncode = self.process.returncode
        self.kill()
        return {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: "
                                                                  f"{_exit_reason(returncode)}"}

    def _send(self, message: dict) -> None:
        data = memoryview(json.dumps(message).encode() + b"\n")
        while data:
            data = data[os.write(self._to_worker, data):]

    def _read(self, deadline: float) -> dict:
        poller = select.poll()
        poller.register(self._from_worker, select.POLLIN)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not poller.poll(remaining * 1000):
                continue
            chunk = os.read(self._from_worker, 1 << 20)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)


def _timeout_document(request_id: str, timeout: int) -> dict:
    return {"errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"}


class _Slots:
    """One function's admitted invocations and idle workers."""

    def __init__(self):
        self.ready = threading.Condition()
        self.active = 0
        self.idle: list[Worker] = []


class Runtime:
    """Every function's workers, in this process."""

    def __init__(self, root: Path, log_dir: Path):
        self.code = CodeCache(root / "code")
        self.log_dir = log_dir
        self._slots: dict[str, _Slots] = {}
        self._lock = threading.Lock()

    def invoke(self, fn: Function, request_id: str, payload: str, arn: str, client_context: dict | None = None,
               wait: bool = False) -> Outcome:
        """Run ``payload`` (JSON text) on a warm or new worker. ``wait``: queue instead of throttling (``Event``)."""
        with self._lock:
            slots = self._slots.setdefault(fn.name, _Slots())
        worker, retired = self._admit(slots, fn, wait)
        for old in retired:
            old.kill()
        try:
            if worker is None:
                worker = Worker(fn, self.code.path(fn), self.log_dir / fn.name)
                failure = worker.init(fn, request_id)
                if failure is not None:
                    worker.kill()
                    return failure
            return worker.invoke(fn, request_id, payload, arn, client_context)
        finally:
            self._release(slots, fn, worker)

    @staticmethod
    def _admit(slots: _Slots, fn: Function, wait: bool) -> tuple[Worker | None, list[Worker]]:
        limit = MAX_WORKERS if fn.reserved is None else fn.reserved
        with slots.ready:
            while slots.active >= limit:
                if fn.reserved is not None and (not wait or fn.reserved == 0):
                    raise ServiceError(429, "TooManyRequestsException", "Rate Exceeded.", {"Retry-After": "1"},
                                       Type="User", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
                slots.ready.wait()
            slots.active += 1
            fresh = [w for w in slots.idle if w.key == fn.environment_key and w.alive()
                     and time.monotonic() - w.started < MAX_AGE]
            retired = [w for w in slots.idle if w not in fresh]
            slots.idle = fresh
            return (slots.idle.pop() if slots.idle else None), retired

    @staticmethod
    def _release(slots: _Slots, fn: Function, worker: Worker | None) -> None:
        with slots.ready:
            slots.active -= 1
            keep = worker is not None and worker.alive() and worker.key == fn.environment_key
            if keep:
                slots.idle.append(worker)
            slots.ready.notify()
        if worker is not None and not keep:
            worker.kill()

    def shutdown(self) -> None:
        with self._lock:
            workers = [w for slots in self._slots.values() for w in slots.idle]
        for worker in workers:
            worker.kill()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


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
            atexit.register(shutil.rmtree, root, True)
        return _runtime

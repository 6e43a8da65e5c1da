"""The emulator's state on disk: a journal of the mutating requests moto answered with success, replayed through
the same moto application on start (``DOGOPS_EMULATOR_STATE_DIR``; unset: in memory only, as moto).

Why a request journal and not moto's objects pickled (LocalStack's first persistence, which its own docs warn
breaks across versions): the requests are AWS's API, which moto upgrades keep, while moto's classes change in
every release. Replaying them rebuilds every service the stack uses, S3 objects, Lambda code and CloudFormation
stacks included, by moto's own code.

On disk (``journal.jsonl`` and ``blobs/``, mode 0600 in a 0700 folder):

- one JSON line per record, appended with a single ``write`` and ``fsync``'d before the client gets its answer;
  a body over ``INLINE_MAX`` bytes is a file ``blobs/<sha256>`` written to a temporary name, ``fsync``'d and
  renamed first. A kill at any moment leaves at most a torn last line, which loading drops (and cuts off), so the
  state is the last complete record's;
- a ``request`` record: the WSGI environ (headers, path, query; the signing key replaced by the root's and any
  session token dropped: the replay is the stack's own), the body, when it ran, and the seed of moto's random
  source for it. Each mutating request runs with moto's ``mock_random`` (moto's documented hook for deterministic
  ids; ``os.urandom`` too, which S3's upload ids come from) seeded per request in its thread, and is replayed
  with the same seed and moto's clock (``utcnow``) set to when it ran, so access keys, secrets, upload ids,
  revision ids and timestamps come back the same;
- an ``update`` record: a training or tuning job's status change, from its runner (in this process or reporting
  from the host), replayed on moto's backend as it was made. Runners do not start again on replay (their jobs'
  last reports are restored); a job still running when the emulator stopped is ``Failed`` (``Stopped`` if it
  was stopping), as its runner is gone;
- endpoints are replayed without hosting; with native hosting each one is then created again from its config, so
  it is ``Creating`` until its new servers answer, as after a ``CreateEndpoint``. The route table of endpoints
  hosted elsewhere (``PUT``/``DELETE /_dogops/hosting/...``: compose's containers) is journaled and replayed.

Reads (GET/HEAD, actions named ``Describe``/``List``/``Get``/...), STS sessions (temporary: callers make new
ones), ``Invoke`` and CloudWatch's ``PutMetricData`` (the stack's own metrics) are not journaled. Loading
compacts: an S3 object written again or deleted later loses its older ``PutObject`` (unless a copy or a versioned
bucket may need it), runs of ``PutLogEvents`` to one stream become one request, and blobs no record names are
removed, so a journal grows with what exists, not with every upload or log batch.
"""

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import random
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote

from moto.core import utils as moto_utils
from moto.moto_api._internal import mock_random
from moto.s3.models import FakeBucket
from werkzeug.wrappers import Request

from training import atomic

from ..security.guard import read_body
from ..stack import settings

log = logging.getLogger(__name__)

INLINE_MAX = 16 * 1024
READ_ACTIONS = ("Describe", "List", "Get", "Head", "Search", "Simulate", "BatchGet", "Query", "Scan", "Lookup",
                "Select", "Test", "Dogops")
NOT_JOURNALED = {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetSessionToken",
                 "GetFederationToken", "Invoke", "InvokeAsync", "InvokeWithResponseStream",
                 "PutMetricData"}  # the stack's own metrics, every second under traffic: the journal would grow without end
ENVIRON_KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "RAW_URI", "REQUEST_URI", "CONTENT_TYPE",
                "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme")
_CREDENTIAL = re.compile(r"(Credential=)[^/,\s]+/")
_QUERY_CREDENTIAL = re.compile(r"(X-Amz-Credential=)[^%&/]+(%2F|/)")

_thread = threading.local()  # .rng, .at: the seeded source and the clock of the mutation this thread runs


def _install() -> None:
    """moto's ``mock_random``, ``os.urandom`` (a few of moto's ids) and ``utcnow`` (moto's own and every copy already
    imported) answer from the thread's running mutation when there is one, else as before. Installed once."""
    getrandbits, uniform, urandom = mock_random.getrandbits, mock_random.random, os.urandom
    os.urandom = lambda n: _thread.rng.randbytes(n) if getattr(_thread, "rng", None) else urandom(n)  # S3's upload ids
    mock_random.getrandbits = lambda k: (_thread.rng.getrandbits(k) if getattr(_thread, "rng", None)
                                         else getrandbits(k))
    mock_random.random = lambda: _thread.rng.random() if getattr(_thread, "rng", None) else uniform()
    original = moto_utils.utcnow

    def utcnow() -> datetime:
        return getattr(_thread, "at", None) or original()

    for name, module in list(sys.modules.items()):
        if name.startswith(("moto", "services")) and getattr(module, "utcnow", None) is original:
            module.utcnow = utcnow
    bucket_init = FakeBucket.__init__

    def init_bucket(bucket, *args, **kwargs) -> None:  # moto dates a bucket with datetime.now, not utcnow
        bucket_init(bucket, *args, **kwargs)
        if getattr(_thread, "at", None):
            bucket.creation_date = _thread.at.replace(tzinfo=timezone.utc)

    FakeBucket.__init__ = init_bucket


@contextlib.contextmanager
def mutation(seed: int, at: datetime):
    """moto's ids drawn from ``seed`` and its clock at ``at`` in this thread for the block."""
    _thread.rng, _thread.at = random.Random(seed), at
    try:
        yield
    finally:
        _thread.rng = _thread.at = None


# -- the journal on disk ------------------------------------------------------------------------------------------
def _encode(value):
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode(document: str) -> dict:
    return json.loads(document, object_hook=lambda o: datetime.fromisoformat(o["__datetime__"])
                      if set(o) == {"__datetime__"} else o)


class Journal:
    """``journal.jsonl`` and ``blobs/`` in ``folder``: append-only, each record on disk before it counts."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "journal.jsonl"
        self.blobs = self.folder / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        self._lock = threading.Lock()
        self._file = None

    def records(self) -> list[dict]:
        """Every complete record; a torn last line (a kill while appending) is cut off the file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        records, good = [], 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn")
                records.append(_decode(line.decode("utf-8")))
            except ValueError:
                log.warning("%s: dropping a torn record at byte %d (%d bytes)", self.path, good, len(data) - good)
                with open(self.path, "r+b") as out:
                    out.truncate(good)
                    os.fsync(out.fileno())
                break
            good += len(line)
        return records

    def append(self, record: dict, body: bytes = b"") -> None:
        """Write ``record`` (with ``body``) durably: the blob first, then the line."""
        if len(body) > INLINE_MAX:
            record["blob"] = self._put_blob(body)
        elif body:
            record["body"] = base64.b64encode(body).decode("ascii")
        line = (json.dumps(record, default=_encode, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._file is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._file = os.fdopen(fd, "ab", buffering=0)
                atomic.fsync_dir(self.folder)
            self._file.write(line)
            os.fsync(self._file.fileno())

    def body(self, record: dict) -> bytes:
        if "blob" in record:
            return (self.blobs / record["blob"]).read_bytes()
        return base64.b64decode(record.get("body", ""))

    def _put_blob(self, body: bytes) -> str:
        digest = hashlib.sha256(body).hexdigest()
        if not (self.blobs / digest).exists():
            atomic.write_bytes(self.blobs / digest, body)
        return digest

    def rewrite(self, records: list[dict]) -> None:
        """Replace the journal with ``records`` atomically; then remove the blobs none of them names."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            with atomic.replacing(self.path) as out:
                for record in records:
                    out.write((json.dumps(record, default=_encode, separators=(",", ":")) + "\n").encode("utf-8"))
            named = {record["blob"] for record in records if "blob" in record}
            for blob in self.blobs.iterdir():
                if blob.name not in named:
                    blob.unlink()


# -- which requests change state ----------------------------------------------------------------------------------
def _action(environ: dict, body: bytes) -> str | None:
    """The action a query-, JSON- or CBOR-protocol request names (``X-Amz-Target``, ``Action=``,
    ``.../operation/<action>``), else None."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    if "/operation/" in environ.get("PATH_INFO", ""):
        return environ["PATH_INFO"].rsplit("/operation/", 1)[1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if "Action" in form:
            return form["Action"][0]
    return None


def mutating(environ: dict, body: bytes) -> bool:
    """Whether the request may change the emulator's state (and so is journaled once it succeeds): moto's, and the
    route table of endpoints hosted elsewhere (``/_dogops/hosting/``)."""
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
        return False
    if environ.get("PATH_INFO", "").startswith("/_dogops/"):
        return environ["PATH_INFO"].startswith("/_dogops/hosting/") and environ["REQUEST_METHOD"] in ("PUT", "DELETE")
    if environ.get("PATH_INFO", "").rstrip("/").endswith(("/invocations", "/invoke-async")):
        return False  # Lambda's Invoke: the gateway runs functions
    action = _action(environ, body)
    return action is None or not (action in NOT_JOURNALED or action.startswith(READ_ACTIONS))


def _as_root(environ: dict) -> dict:
    """What the replay sends: the request's environ signed by the stack's root key (no session token)."""
    kept = {k: v for k, v in environ.items()
            if isinstance(v, str) and (k.startswith("HTTP_") or k in ENVIRON_KEYS)
            and k not in ("HTTP_X_AMZ_SECURITY_TOKEN", "HTTP_CONTENT_LENGTH")}
    if "HTTP_AUTHORIZATION" in kept:
        kept["HTTP_AUTHORIZATION"] = _CREDENTIAL.sub(rf"\g<1>{settings.ACCESS_KEY}/", kept["HTTP_AUTHORIZATION"])
    for key in ("QUERY_STRING", "RAW_URI", "REQUEST_URI"):
        if key in kept:
            kept[key] = re.sub(r"&?X-Amz-Security-Token=[^&]*", "",
                               _QUERY_CREDENTIAL.sub(rf"\g<1>{settings.ACCESS_KEY}\g<2>", kept[key]))
    return kept


# -- compaction ---------------------------------------------------------------------------------------------------
def _s3_target(record: dict) -> tuple[str, str] | None:
    """(bucket, key) of a path-style S3 ``PutObject``/``DeleteObject`` record with no sub-resource, else None."""
    environ = record.get("environ", {})
    if (environ.get("REQUEST_METHOD") not in ("PUT", "DELETE") or environ.get("QUERY_STRING")
            or "HTTP_X_AMZ_COPY_SOURCE" in environ or "/s3/" not in environ.get("HTTP_AUTHORIZATION", "")):
        return None
    parts = unquote(environ.get("PATH_INFO", "")).lstrip("/").split("/", 1)
    return (parts[0], parts[1]) if len(parts) == 2 and parts[1] else None


PUT_LOG_EVENTS = "Logs_20140328.PutLogEvents"
LOG_BATCH_SPAN = timedelta(hours=1)  # CloudWatch Logs takes events up to 2 h ahead of its clock: merged batches span less
LOG_BATCH_EVENTS = 10_000  # PutLogEvents' limit


def _merge_log_batches(records: list[dict], body: Callable[[dict], bytes]) -> list[dict]:
    """``records`` with each run of ``PutLogEvents`` to one log stream (no other request on its log group between,
    within ``LOG_BATCH_SPAN`` and ``LOG_BATCH_EVENTS``) as one request: the stack's log writers send a batch every
    half second, which replayed one by one would make a start slow."""
    merged, open_batches = [], {}  # (group, stream) -> index in merged of the batch still taking events
    for record in records:
        environ = record.get("environ", {})
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("Logs_"):
            merged.append(record)
            continue
        try:
            request = json.loads(body(record) or b"{}")
        except ValueError:
            request = {}
        group = request.get("logGroupName") or request.get("logGroupIdentifier")
        if target != PUT_LOG_EVENTS or not isinstance(request.get("logEvents"), list):
            open_batches = {key: i for key, i in open_batches.items() if key[0] != group}  # a change to the group
            merged.append(record)
            continue
        key, index = (group, request.get("logStreamName")), open_batches.get((group, request.get("logStreamName")))
        if index is not None:
            first = merged[index]
            events = first["events"] + request["logEvents"]
            if record["at"] - first["started"] < LOG_BATCH_SPAN and len(events) <= LOG_BATCH_EVENTS:
                first.update(events=events, at=record["at"])
                continue
        open_batches[key] = len(merged)
        merged.append({**record, "events": request["logEvents"], "started": record["at"], "request": request})
    out = []
    for record in merged:
        if "events" in record:
            request = {**record.pop("request"), "logEvents": sorted(record.pop("events"), key=lambda e: e["timestamp"])}
            request.pop("sequenceToken", None)
            record.pop("started")
            record.pop("blob", None)
            record["body"] = base64.b64encode(json.dumps(request).encode()).decode("ascii")
        out.append(record)
    return out


def compact(records: list[dict], body: Callable[[dict], bytes] = lambda record: b"") -> list[dict]:
    """``records`` without the S3 writes a later write or delete of the same object replaced, in buckets with no
    versioning, copy or multipart upload (which could read an older object) in the journal, and with consecutive
    log batches to a stream merged (``body``: a record's body)."""
    records = _merge_log_batches(records, body)
    unsafe = set()
    for record in records:
        environ = record.get("environ", {})
        query, path = environ.get("QUERY_STRING", ""), unquote(environ.get("PATH_INFO", "")).lstrip("/")
        if "/s3/" not in environ.get("HTTP_AUTHORIZATION", ""):
            continue
        if "versioning" in query or "uploads" in query or "uploadId" in query or "delete" in query:
            unsafe.add(path.split("/", 1)[0])
        if "HTTP_X_AMZ_COPY_SOURCE" in environ:
            unsafe.add(unquote(environ["HTTP_X_AMZ_COPY_SOURCE"]).lstrip("/").split("/", 1)[0])
    latest: dict[tuple[str, str], int] = {}
    for index, record in enumerate(records):
        target = _s3_target(record)
        if target and target[0] not in unsafe:
            latest[target] = index
    kept = []
    for index, record in enumerate(records):
        target = _s3_target(record)
        if target and target[0] not in unsafe and latest[target] != index:
            continue
        kept.append(record)
    return kept


# -- the store: recording and replaying ---------------------------------------------------------------------------
INTERRUPTED = ("InternalServerError: the local stack's emulator stopped while this job ran, and its runner with it; "
               "create the job again to run it.")


class Store:
    """The journal in ``folder`` in front of moto's WSGI application ``app``: :meth:`restore` once, then every
    request through :meth:`__call__`."""

    def __init__(self, folder: Path, app):
        from . import sagemaker_training, sagemaker_tuning

        self.journal, self.app = Journal(folder), app
        self._serial = threading.Lock()  # a mutation runs and is journaled before the next one runs
        _install()
        self.updates = {}  # kind -> the job module's own update (replayed as recorded)
        for module in (sagemaker_training, sagemaker_tuning):
            kind = next(k for k, f in sagemaker_training.UPDATES.items() if f is module.update)
            self.updates[kind] = module.update
            module.update = sagemaker_training.UPDATES[kind] = self._journaled_update(kind)

    def _journaled_update(self, kind: str):
        """The job module's ``update``, journaled when a runner calls it (inside a journaled request, or its replay,
        the request replays it)."""
        def update(account: str, region: str, name: str, status: str | None = None, secondary: str | None = None,
                   message: str = "", **fields) -> None:
            if getattr(_thread, "at", None) is not None:
                return self.updates[kind](account, region, name, status, secondary, message, **fields)
            at = moto_utils.utcnow()
            with mutation(0, at):
                self.updates[kind](account, region, name, status, secondary, message, **fields)
            try:
                self.journal.append({"type": "update", "kind": kind, "at": at, "account": account, "region": region,
                                     "name": name, "status": status, "secondary": secondary, "message": message,
                                     "fields": fields})
            except (OSError, TypeError, ValueError):
                log.exception("%s %s: this report is not persisted", kind, name)
        return update

    def __call__(self, environ, start_response):
        body = read_body(Request(environ))
        if not mutating(environ, body):
            return self.app(environ, start_response)
        statuses = []

        def capture(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, headers, exc_info)

        seed = secrets.randbits(63)  # what moto draws ids and secret keys from: unpredictable
        with self._serial:
            at = moto_utils.utcnow()
            with mutation(seed, at):
                answer = self.app(environ, capture)
            if statuses and statuses[0].startswith("2"):
                self.journal.append({"type": "request", "at": at, "seed": seed, "environ": _as_root(environ)}, body)
        return answer

    def restore(self) -> dict:
        """Replay the journal (no runner starts, nothing is hosted meanwhile), end the jobs that were running,
        compact the journal, then host the endpoints again. What was replayed, by kind."""
        started, counts = time.monotonic(), {"request": 0, "update": 0, "failed": 0}
        records = self.journal.records()
        saved = {name: os.environ.get(name) for name in ("DOGOPS_TRAINING_RUNNER", "DOGOPS_HOSTING")}
        os.environ.update(DOGOPS_TRAINING_RUNNER="off", DOGOPS_HOSTING="off")
        try:
            for record in records:
                ok = self._replay(record)
                counts[record["type"] if ok else "failed"] += 1
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self.journal.rewrite(compact(records, self.journal.body))
        self._end_interrupted_jobs()
        self._host_endpoints()
        counts["seconds"] = round(time.monotonic() - started, 2)
        return counts

    def _replay(self, record: dict) -> bool:
        with mutation(record.get("seed", 0), record["at"]):
            if record["type"] == "update":
                try:
                    self.updates[record["kind"]](record["account"], record["region"], record["name"],
                                                 record["status"], record["secondary"], record["message"],
                                                 **record["fields"])
                    return True
                except Exception as exc:  # noqa: BLE001 (a job moto no longer has: said, and skipped)
                    log.warning("replaying %s %s: %r", record["kind"], record["name"], exc)
                    return False
            body = self.journal.body(record)
            environ = {**record["environ"], "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                       "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": False,
                       "wsgi.multiprocess": False, "wsgi.run_once": False}
            statuses = []
            try:
                answer = self.app(environ, lambda status, headers, exc_info=None: statuses.append(status))
                try:
                    text = b"".join(answer)
                finally:
                    getattr(answer, "close", lambda: None)()
            except Exception as exc:  # noqa: BLE001 (one request moto now fails on: said, and the rest replayed)
                statuses, text = [], repr(exc).encode()
        if statuses and statuses[0].startswith("2"):
            return True
        log.warning("replaying %s %s answered %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"],
                    statuses[:1], text[:300])
        return False

    def _end_interrupted_jobs(self) -> None:
        from moto.sagemaker.models import sagemaker_backends

        from . import sagemaker_training, sagemaker_tuning

        for account, regions in list(sagemaker_backends.items()):
            for region, backend in list(regions.items()):
                for kind, jobs, status in (
                        ("TrainingJob", backend.training_jobs, "training_job_status"),
                        (sagemaker_tuning.KIND, backend.hyper_parameter_tuning_jobs,
                         "hyper_parameter_tuning_job_status")):
                    for name, job in list(jobs.items()):
                        if getattr(job, status) == "Stopping":
                            sagemaker_training.UPDATES[kind](account, region, name, "Stopped", "Stopped",
                                                             "The job was stopped")
                        elif getattr(job, status) == "InProgress":
                            sagemaker_training.UPDATES[kind](account, region, name, "Failed", "Failed", INTERRUPTED,
                                                             failure_reason=INTERRUPTED)

    @staticmethod
    def _host_endpoints() -> None:
        """With native hosting (whose servers ended with the emulator), each endpoint created again from its config
        through moto's backend, as ``CreateEndpoint`` would (its name, ARN, tags and creation time kept), so it is
        served again. Elsewhere the endpoints' servers outlive the emulator: their replayed routes lead to them."""
        from moto.sagemaker.models import sagemaker_backends

        from .sagemaker_endpoints import hosting

        if hosting() != "native":
            return
        for regions in list(sagemaker_backends.values()):
            for backend in list(regions.values()):
                for name, old in list(backend.endpoints.items()):
                    del backend.endpoints[name]
                    with mutation(0, old.last_modified_time):
                        endpoint = backend.create_endpoint(name, old.endpoint_config_name, old.tags)
                    endpoint.creation_time = old.creation_time

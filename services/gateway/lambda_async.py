"""Asynchronous invocation (``InvocationType=Event``) as Lambda runs it.

- Queue: each accepted event is committed to a SQLite file before the 202 (``<DOGOPS_STATE_DIR>/lambda-events/``,
  one file per emulator the gateway serves), so an event survives a gateway killed at any moment and is delivered
  when the gateway starts again; one running when the gateway died runs again (at least once, as on AWS). A
  function's queue holds ``DOGOPS_LAMBDA_EVENT_QUEUE`` (10000) events; past that ``Invoke`` answers 429
  ``TooManyRequestsException``.
- Delivery: ``DOGOPS_LAMBDA_EVENT_THREADS`` (8) threads take due events in order, never a thread per event.
- Function errors (raised by the handler, or the runtime's: timeout, exit, init error) are retried
  ``MaximumRetryAttempts`` times (2 unless the event invoke config says otherwise), after
  ``DOGOPS_LAMBDA_RETRY_DELAY`` seconds then twice that (60: AWS's one then two minutes; tests shorten it).
- Throttles (429) and service errors put the event back on the queue without counting an attempt, retried after
  1 s doubling up to 5 minutes (AWS's intervals), or as soon as one of the function's deliveries ends and frees
  its concurrency, until ``MaximumEventAgeInSeconds`` (6 hours unless configured). A function with
  reserved concurrency 0 sends its events to failure without running them, as AWS documents.
- Outcomes: an event that succeeds goes to the on-success destination; one whose attempts are exhausted
  (``RetriesExhausted``) or that outlived its maximum age (``EventAgeExceeded``) to the on-failure destination and to
  the dead-letter queue (``DeadLetterConfig``). Destinations (SQS, SNS, Lambda, EventBridge) get AWS's invocation
  record; the dead-letter queue (SQS, SNS) the event as sent, with the ``RequestID``, ``ErrorCode`` and
  ``ErrorMessage`` attributes. Both are sent with the function's execution role (STS ``AssumeRole``), as AWS sends
  them; a Lambda destination is invoked asynchronously, through this queue. A record that cannot be sent is logged
  and dropped.
- Metrics (``AWS/Lambda``, as AWS names them): ``AsyncEventsReceived``, ``AsyncEventAge``, ``AsyncEventsDropped``,
  ``DestinationDeliveryFailures``, ``DeadLetterErrors``.
"""

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ..observability import lambda_metrics
from ..stack import settings
from . import lambda_runtime, lambda_versions
from .aws_errors import request_id
from .emulator import Recent, client
from .lambda_runtime import CONFIG_SECONDS, Function, Outcome, ServiceError

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 6 * 3600  # s
THROTTLE_DELAY, THROTTLE_MAX = 1.0, 300.0  # s
DLQ_MESSAGE_LIMIT = 1024  # bytes of the error message in the ErrorMessage attribute


def retry_delay() -> float:
    return float(os.environ.get("DOGOPS_LAMBDA_RETRY_DELAY") or 60)


@dataclass
class Event:
    id: str  # the request id Invoke answered, the same on every attempt
    function: str
    qualifier: str | None
    payload: str
    received: float  # epoch s
    attempts: int = 0  # function runs so far
    throttles: int = 0
    response: str | None = None  # the last failed attempt, JSON: {"version", "body", "error"}


_configs = Recent(CONFIG_SECONDS)


def _lookup(operation: str, name: str, qualifier: str | None, missing: str) -> dict:
    """A Lambda read on the emulator; ``{}`` when it answers ``missing``."""
    try:
        return getattr(client("lambda"), operation)(FunctionName=name, **({"Qualifier": qualifier} if qualifier
                                                                            else {}))
    except ClientError as e:
        if e.response["Error"]["Code"] == missing:
            return {}
        raise ServiceError(500, "ServiceException", f"{operation} on the emulator failed: {e}") from None
    except BotoCoreError as e:
        raise ServiceError(500, "ServiceException", f"the emulator is unreachable: {e}") from None


def invoke_config(name: str, qualifier: str | None) -> dict:
    """The event invoke config of the qualifier invoked (``{}``: AWS's defaults)."""
    return _configs.get(("invoke", name, qualifier), lambda: _lookup(
        "get_function_event_invoke_config", name, qualifier, "ResourceNotFoundException"))


def dead_letter_target(fn: Function) -> str | None:
    config = _configs.get(("dlq", fn.name, fn.version), lambda: _lookup(
        "get_function_configuration", fn.name, fn.version, "ResourceNotFoundException"))
    return (config.get("DeadLetterConfig") or {}).get("TargetArn")


ROLE_SECONDS = 30 * 60  # a role's client is reused this long (its credentials last an hour)
STALE_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken",
                     "ExpiredTokenException", "InvalidToken"}  # e.g. a restarted emulator forgot the session
_role_clients: dict[tuple[str, str], tuple[float, object]] = {}
_role_lock = threading.Lock()


def role_client(role: str, service: str, fresh: bool = False):
    """A client on the emulator with the function's execution role (``fresh``: with new credentials)."""
    with _role_lock:
        made_at, found = _role_clients.get((role, service), (0.0, None))
        if found is not None and not fresh and time.monotonic() - made_at < ROLE_SECONDS:
            return found
    credentials = client("sts").assume_role(RoleArn=role, RoleSessionName="lambda-async")["Credentials"]
    with _role_lock:  # making a client is not thread-safe
        made = boto3.session.Session().client(
            service, endpoint_url=settings.emulator_url(), region_name=settings.REGION,
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"])
    _role_clients[(role, service)] = (time.monotonic(), made)
    return made


def as_role(role: str, service: str, operation: str, **args) -> dict:
    """``operation`` with the role's client, once more with new credentials if the emulator forgot the old."""
    try:
        return getattr(role_client(role, service), operation)(**args)
    except ClientError as e:
        if e.response["Error"]["Code"] not in STALE_CREDENTIALS:
            raise
        return getattr(role_client(role, service, fresh=True), operation)(**args)


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json_or_text(body: str):
    try:
        return json.loads(body)
    except ValueError:
        return body


def record(event: Event, condition: str, response: dict | None) -> dict:
    """AWS's invocation record; ``response``: the last attempt's ``{"version", "body", "error"}``, if any."""
    answer = {"version": "1.0", "timestamp": _timestamp(),
              "requestContext": {"requestId": event.id,
                                 "functionArn": lambda_runtime.function_arn(event.function,
                                                                           event.qualifier or "$LATEST"),
                                 "condition": condition, "approximateInvokeCount": event.attempts},
              "requestPayload": json.loads(event.payload)}
    if response is not None:
        context = {"statusCode": 200, "executedVersion": response["version"]}
        if response["error"]:
            context["functionError"] = "Unhandled"
        answer["responseContext"] = context
        answer["responsePayload"] = _json_or_text(response["body"])
    return answer


class EventQueue:
    """Every function's persisted event queue and the threads that deliver it."""

    def __init__(self, path: Path, threads: int, limit: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.limit, self.threads = limit, threads
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, function TEXT, qualifier TEXT, "
                         "payload TEXT, received REAL, attempts INTEGER, throttles INTEGER, response TEXT, due REAL, "
                         "throttled INTEGER)")
        self._db.execute("CREATE INDEX IF NOT EXISTS events_due ON events (due)")
        self._db.execute("CREATE INDEX IF NOT EXISTS events_function ON events (function)")
        self._ready = threading.Condition()
        self._running: set[str] = set()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="lambda-event")
        threading.Thread(target=self._dispatch, name="lambda-events", daemon=True).start()

    def put(self, event: Event) -> None:
        """Queue a new event (committed when this returns); 429 when the function's queue is full."""
        with self._ready:
            (queued,) = self._db.execute("SELECT COUNT(*) FROM events WHERE function = ?", (event.function,)).fetchone()
            if queued >= self.limit:
                raise ServiceError(429, "TooManyRequestsException", "Rate Exceeded.", {"Retry-After": "1"},
                                   Type="User", Reason="FunctionInvocationRateLimitExceeded")
            self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, 0, 0, NULL, ?, 0)", (
                event.id, event.function, event.qualifier, event.payload, event.received, event.received))
            self._ready.notify()
        _metric(event.function, "AsyncEventsReceived", qualifier=event.qualifier)

    def _dispatch(self) -> None:
        while True:
            with self._ready:
                if len(self._running) >= self.threads:  # woken when a delivery ends
                    self._ready.wait(1.0)
                    continue
                due = self._take()
                if not due:
                    self._ready.wait(self._sleep())
                    continue
            for event in due:
                self._pool.submit(self._deliver, event)

    def _take(self) -> list[Event]:
        free = self.threads - len(self._running)
        running = tuple(self._running)
        rows = self._db.execute(
            f"SELECT id, function, qualifier, payload, received, attempts, throttles, response FROM events "
            f"WHERE due <= ? AND id NOT IN ({','.join('?' * len(running))}) ORDER BY due LIMIT ?",
            (time.time(), *running, free)).fetchall()
        self._running.update(row[0] for row in rows)
        return [Event(*row) for row in rows]

    def _sleep(self) -> float:
        """Seconds until the next event not running is due (at most one)."""
        running = tuple(self._running)
        (due,) = self._db.execute(f"SELECT MIN(due) FROM events WHERE id NOT IN ({','.join('?' * len(running))})",
                                  running).fetchone()
        return 1.0 if due is None else min(1.0, max(0.01, due - time.time()))

    def _done(self, event: Event) -> None:
        with self._ready:
            self._db.execute("DELETE FROM events WHERE id = ?", (event.id,))

    def _later(self, event: Event, delay: float, throttled: bool = False) -> None:
        with self._ready:
            self._db.execute("UPDATE events SET attempts = ?, throttles = ?, response = ?, due = ?, throttled = ? "
                             "WHERE id = ?", (event.attempts, event.throttles, event.response, time.time() + delay,
                                              int(throttled), event.id))

    def _freed(self, function: str) -> None:
        """A delivery of ``function`` ended: its throttled events may run now."""
        with self._ready:
            self._db.execute("UPDATE events SET due = ? WHERE function = ? AND throttled = 1 AND due > ?",
                             (time.time(), function, time.time()))
            self._ready.notify()

    def _deliver(self, event: Event) -> None:
        try:
            self._attempt(event)
        except Exception:  # noqa: BLE001 (a delivery thread must survive anything; the event is retried)
            log.exception("asynchronous invocation %s of %s failed; retried", event.id, event.function)
            event.throttles += 1
            self._later(event, min(THROTTLE_DELAY * 2 ** (event.throttles - 1), THROTTLE_MAX), throttled=True)
        finally:
            with self._ready:
                self._running.discard(event.id)
                self._ready.notify()

    def _attempt(self, event: Event) -> None:
        config = invoke_config(event.function, event.qualifier)
        try:
            fn = lambda_runtime.describe(event.function, lambda_versions.version(event.function, event.qualifier))
        except ServiceError as e:
            if e.status == 404:
                log.warning("asynchronous invocation %s dropped: %s", event.id, e.message)
                self._done(event)
                return
            raise
        last = json.loads(event.response) if event.response else None
        if time.time() - event.received > config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE):
            return self._fail(event, fn, config, "EventAgeExceeded", last)
        if fn.reserved == 0:
            return self._fail(event, fn, config, "RetriesExhausted", last)
        arn = lambda_runtime.function_arn(fn.name, event.qualifier)
        began = time.time()
        try:
            outcome = lambda_runtime.runtime().invoke(fn, event.id, event.payload, arn)  # 429 when busy
        except ServiceError as e:  # throttled, or the service failed: back on the queue
            log.info("asynchronous invocation %s of %s returned to the queue: %s", event.id, fn.name, e.message)
            event.throttles += 1
            return self._later(event, min(THROTTLE_DELAY * 2 ** (event.throttles - 1), THROTTLE_MAX), True)
        self._freed(fn.name)
        _metric(fn.name, "AsyncEventAge", (began - event.received) * 1000, "Milliseconds", event.qualifier)
        event.attempts += 1
        response = _response(fn, outcome)
        if not outcome.error:
            self._send(fn, config, "OnSuccess", record(event, "Success", response))
            return self._done(event)
        if event.attempts > config.get("MaximumRetryAttempts", DEFAULT_RETRIES):
            return self._fail(event, fn, config, "RetriesExhausted", response)
        event.response = json.dumps(response)
        self._later(event, retry_delay() * 2 ** (event.attempts - 1))

    def _fail(self, event: Event, fn: Function, config: dict, condition: str, response: dict | None) -> None:
        _metric(fn.name, "AsyncEventsDropped", qualifier=event.qualifier)
        self._send(fn, config, "OnFailure", record(event, condition, response))
        target = dead_letter_target(fn)
        if target:
            self._dead_letter(fn, target, event, response)
        self._done(event)

    def _send(self, fn: Function, config: dict, condition: str, document: dict) -> None:
        destination = ((config.get("DestinationConfig") or {}).get(condition) or {}).get("Destination")
        if not destination:
            return
        body = json.dumps(document)
        service = destination.split(":")[2]
        try:
            if service == "lambda":
                name, _, qualifier = destination.split(":function:", 1)[1].partition(":")
                self.put(Event(request_id(), name, qualifier or None, body,
                               time.time()))
            elif service == "sqs":
                as_role(fn.role, "sqs", "send_message", QueueUrl=_queue_url(destination), MessageBody=body)
            elif service == "sns":
                as_role(fn.role, "sns", "publish", TopicArn=destination, Message=body)
            else:  # events
                detail = "Success" if condition == "OnSuccess" else "Failure"
                as_role(fn.role, "events", "put_events", Entries=[{
                    "Source": "lambda", "DetailType": f"Lambda Function Invocation Result - {detail}",
                    "Detail": body, "EventBusName": destination,
                    "Resources": [lambda_runtime.function_arn(fn.name, fn.version), destination]}])
        except (ClientError, BotoCoreError, ServiceError) as e:
            log.warning("the %s record of %s could not be sent to %s: %s", condition, fn.name, destination, e)
            _metric(fn.name, "DestinationDeliveryFailures")

    @staticmethod
    def _dead_letter(fn: Function, target: str, event: Event, response: dict | None) -> None:
        message = ""
        if response is not None:
            body = _json_or_text(response["body"])
            message = body.get("errorMessage", "") if isinstance(body, dict) else str(body)
        attributes = {"RequestID": {"DataType": "String", "StringValue": event.id},
                      "ErrorCode": {"DataType": "Number", "StringValue": "200" if response else "429"},
                      "ErrorMessage": {"DataType": "String", "StringValue": message.encode()[:DLQ_MESSAGE_LIMIT]
                                       .decode(errors="ignore") or "-"}}
        try:
            if target.split(":")[2] == "sqs":
                as_role(fn.role, "sqs", "send_message", QueueUrl=_queue_url(target), MessageBody=event.payload,
                        MessageAttributes=attributes)
            else:
                as_role(fn.role, "sns", "publish", TopicArn=target, Message=event.payload,
                        MessageAttributes=attributes)
        except (ClientError, BotoCoreError) as e:
            log.warning("event %s of %s could not be sent to its dead-letter queue %s: %s", event.id, fn.name,
                        target, e)
            _metric(fn.name, "DeadLetterErrors")


def _metric(function: str, name: str, value: float = 1, unit: str = "Count", qualifier: str | None = None) -> None:
    lambda_metrics.asynchronous(settings.REGION, function, name, value, unit, qualifier)


def _queue_url(arn: str) -> str:
    """The queue's URL, looked up by the service (the role needs only ``sqs:SendMessage``, as on AWS)."""
    _, _, _, _, account, name = arn.split(":", 5)
    return client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def _response(fn: Function, outcome: Outcome) -> dict:
    return {"version": fn.version, "body": outcome.body.decode(errors="replace"), "error": outcome.error}


_queue: EventQueue | None = None
_queue_lock = threading.Lock()


def queue() -> EventQueue:
    """This process's event queue, made (and its pending events delivered) at first use."""
    global _queue
    with _queue_lock:
        if _queue is None:
            emulator = hashlib.sha256(settings.emulator_url().encode()).hexdigest()[:16]
            _queue = EventQueue(settings.state_dir() / "lambda-events" / f"{emulator}.sqlite3",
                                int(os.environ.get("DOGOPS_LAMBDA_EVENT_THREADS") or 8),
                                int(os.environ.get("DOGOPS_LAMBDA_EVENT_QUEUE") or 10000))
        return _queue

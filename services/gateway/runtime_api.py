"""The Lambda Runtime API (version 2018-06-01) of one execution environment, as AWS's Runtime Interface Emulator
serves it to ``awslambdaric``:

- ``GET  /2018-06-01/runtime/invocation/next``: waits for the next event; 200 with the payload and the
  ``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn``, ``-Trace-Id`` and, when
  there are any, ``-Client-Context`` and ``-Cognito-Identity`` headers;
- ``POST /2018-06-01/runtime/invocation/{id}/response``: the result, 202;
- ``POST /2018-06-01/runtime/invocation/{id}/error``: the error document (``Lambda-Runtime-Function-Error-Type``),
  202;
- ``POST /2018-06-01/runtime/init/error``: the init failure, 202.

Each environment gets its own server on 127.0.0.1 at a port of its own (``AWS_LAMBDA_RUNTIME_API`` is a bare
``host:port``, so it cannot carry a secret path). It answers only its runtime client: a request whose ``Host``
is not exactly that address (DNS rebinding) or that carries a browser's ``Origin``, ``Referer`` or ``Sec-Fetch-*``
header is refused with 403, so a web page cannot take events or forge results.
"""

import json
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
BROWSER_HEADERS = ("Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest")


@dataclass(frozen=True)
class Event:
    """One invocation handed to the runtime."""

    request_id: str
    payload: bytes
    arn: str
    deadline_ms: int  # epoch milliseconds
    client_context: str | None = None  # JSON text
    trace_id: str | None = None


@dataclass(frozen=True)
class Result:
    """What the runtime posted: ``error_type`` is None for a response."""

    body: bytes
    content_type: str
    error_type: str | None = None


class Exited(Exception):
    """The runtime process ended (or was closed) before it answered."""


class RuntimeApi:
    """The server, and the state of its one environment: the event waiting for ``/next``, the result posted."""

    def __init__(self):
        self._state = threading.Condition()
        self._event: Event | None = None  # queued, not yet taken by /next
        self._current: str | None = None  # the request id taken by /next and not answered
        self._result: Result | None = None
        self._init_error: Result | None = None
        self._polling = False  # the runtime has asked for an event: its init is done
        self._closed = False
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                         name=f"runtime-api-{self.address}", daemon=True).start()

    def wait_ready(self, deadline: float) -> Result | None:
        """Wait until the runtime polls for its first event (None) or posts an init error (that error).
        ``TimeoutError`` past ``deadline`` (monotonic); ``Exited`` when the process ended first."""
        with self._state:
            self._wait(lambda: self._polling or self._init_error is not None, deadline)
            return self._init_error

    def invoke(self, event: Event, deadline: float) -> Result:
        """Hand ``event`` to the runtime and wait for its result (``TimeoutError``, ``Exited`` as above)."""
        with self._state:
            self._event, self._result = event, None
            self._state.notify_all()
            self._wait(lambda: self._result is not None, deadline)
            return self._result

    def exited(self) -> None:
        """The process ended: wake whoever waits on it."""
        with self._state:
            self._closed = True
            self._state.notify_all()

    def close(self) -> None:
        """Stop serving (in the background: the server's loop notices within its poll interval)."""
        self.exited()
        threading.Thread(target=self._stop, daemon=True).start()

    def _stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _wait(self, done, deadline: float) -> None:
        while not done():
            if self._closed:
                raise Exited
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._state.wait(remaining)

    # The runtime's side (the server's threads).

    def next_event(self) -> Event | None:
        with self._state:
            self._polling = True
            self._state.notify_all()
            while self._event is None and not self._closed:
                self._state.wait()
            event, self._event = self._event, None
            if event is not None:
                self._current = event.request_id
            return event

    def post(self, request_id: str | None, result: Result) -> bool:
        """Record a result (``request_id`` None: the init error); False when no such invocation is waiting."""
        with self._state:
            if request_id is None:
                if self._polling or self._init_error is not None:
                    return False
                self._init_error = result
            else:
                if request_id != self._current:
                    return False
                self._current, self._result = None, result
            self._state.notify_all()
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A runtime killed while it waited for an event leaves a broken connection: nothing to report."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _handler(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms wait for an ACK

        def log_message(self, *args) -> None:  # the gateway's log has no line per poll
            pass

        def do_GET(self) -> None:
            if not self._allowed():
                return
            if self.path != f"{PREFIX}/invocation/next":
                return self._reply(HTTPStatus.NOT_FOUND, {"errorType": "NotFound", "errorMessage": self.path})
            event = api.next_event()
            if event is None:  # the environment is shut down
                return self._reply(HTTPStatus.GONE, {"errorType": "ShutDown", "errorMessage": "shut down"})
            headers = {"Lambda-Runtime-Aws-Request-Id": event.request_id,
                       "Lambda-Runtime-Deadline-Ms": str(event.deadline_ms),
                       "Lambda-Runtime-Invoked-Function-Arn": event.arn,
                       "Lambda-Runtime-Trace-Id": event.trace_id or ""}
            if event.client_context:
                headers["Lambda-Runtime-Client-Context"] = event.client_context
            self._send(HTTPStatus.OK, event.payload, "application/json", headers)

        def do_POST(self) -> None:
            if not self._allowed():
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path[len(PREFIX):].strip("/").split("/") if self.path.startswith(PREFIX + "/") else []
            if parts == ["init", "error"]:
                request_id, kind = None, "error"
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                request_id, kind = parts[1], parts[2]
            else:
                return self._reply(HTTPStatus.NOT_FOUND, {"errorType": "NotFound", "errorMessage": self.path})
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") if kind == "error" else None
            if kind == "error" and not error_type:
                error_type = "Unhandled"
            result = Result(body, self.headers.get("Content-Type") or "application/json", error_type)
            if not api.post(request_id, result):
                return self._reply(HTTPStatus.BAD_REQUEST, {"errorType": "InvalidRequestID",
                                                             "errorMessage": "Invalid request ID"})
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})

        def _allowed(self) -> bool:
            if self.headers.get("Host") == api.address and not any(self.headers.get(h) for h in BROWSER_HEADERS):
                return True
            self.close_connection = True
            self._reply(HTTPStatus.FORBIDDEN, {"errorType": "Forbidden",
                                               "errorMessage": "the Runtime API answers its own runtime only"})
            return False

        def _reply(self, status: HTTPStatus, document: dict) -> None:
            self._send(status, json.dumps(document).encode(), "application/json", {})

        def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler

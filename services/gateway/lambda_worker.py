"""One Lambda execution environment: imports the handler, then runs one invocation at a time.

    python -m services.gateway.lambda_worker --in-fd R --out-fd W   (cwd: the unpacked code)

The gateway (``lambda_runtime``) starts it with Lambda's environment (``_HANDLER``,
``AWS_LAMBDA_FUNCTION_NAME``, ...) and talks to it over two private pipes, one JSON
message per line, so whatever the handler prints goes to stdout/stderr, the
worker's log, never into the protocol:

- worker → gateway, once: ``{"ready": true}``, or ``{"error": {...}}`` and exit 1
  when init fails (awslambdaric's ``Runtime.*`` error documents, ``requestId`` "");
- gateway → worker: ``{"id", "payload", "arn", "deadline_ms", "client_context"}``;
- worker → gateway: ``{"json": "<text>"}``, ``{"bytes": "<base64>"}`` or ``{"error": {...}}``.

Timeouts are the gateway's business: it kills the worker.
"""

import argparse
import base64
import decimal
import importlib
import json
import logging
import os
import sys
import time
import traceback


class InitError(Exception):
    """A ``Runtime.*`` fault with awslambdaric's type, message and trace."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None):
        super().__init__(message)
        self.error_type, self.message, self.trace = error_type, message, trace or []


def error_document(message: str, error_type: str, trace: list[str], request_id: str = "") -> dict:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": trace}


def exception_document(exc: BaseException, request_id: str = "") -> dict:
    """An uncaught exception as Lambda reports it, the runtime's own frames cut from the trace."""
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and (frames[0].filename == __file__ or frames[0].filename.startswith("<frozen importlib")):
        frames = frames[1:]
    return error_document(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def load_handler(handler: str):
    """``module.function`` resolved as awslambdaric does (``/`` in the module path allowed)."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    if modname.split(".")[0] in sys.builtin_module_names:
        raise InitError("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {modname} as a handler module")
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise InitError("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise InitError("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'") from None


class _Fields:
    """A plain object whose attributes are the given names, read from a dict (``None`` when absent)."""

    def __init__(self, names: tuple[str, ...], values: dict | None):
        for name in names:
            setattr(self, name, (values or {}).get(name))

    def __repr__(self):
        return f"{type(self).__name__}({vars(self)})"


class LambdaContext:
    """The ``context`` argument, with awslambdaric's attributes (``memory_limit_in_mb`` is a string)."""

    def __init__(self, request_id: str, arn: str, deadline_ms: int, client_context: dict | None):
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.invoked_function_arn = arn
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.tenant_id = None
        self.identity = _Fields(("cognito_identity_id", "cognito_identity_pool_id"), None)
        self.client_context = None
        if client_context is not None:
            self.client_context = _Fields(("custom", "env", "client"), client_context)
            self.client_context.client = _Fields(
                ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"),
                client_context.get("client")) if client_context.get("client") is not None else None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg) -> None:
        sys.stdout.write(str(msg))
        sys.stdout.flush()


def _decimal(value):
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def marshal(result) -> dict:
    """The handler's value as Lambda returns it: ``bytes`` raw, anything else JSON (NaN allowed)."""
    if isinstance(result, bytes):
        return {"bytes": base64.b64encode(result).decode()}
    ascii_only = os.environ.get("AWS_EXECUTION_ENV") != "AWS_Lambda_python3.12"  # as awslambdaric decides
    try:
        return {"json": json.dumps(result, default=_decimal, ensure_ascii=ascii_only)}
    except (TypeError, ValueError) as e:
        raise InitError("Runtime.MarshalError", f"Unable to marshal response: {e}") from None


class _RequestId(logging.Filter):
    """Stamps log records with the current invocation's id, as awslambdaric's log format shows it."""

    current = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.current
        return True


def invoke(handler, request: dict) -> dict:
    request_id = _RequestId.current = request["id"]
    try:
        context = LambdaContext(request_id, request["arn"], request["deadline_ms"], request["client_context"])
        return marshal(handler(json.loads(request["payload"]), context))
    except InitError as e:
        document = error_document(e.message, e.error_type, e.trace, request_id)
    except Exception as e:  # the function's own failure, reported to the caller
        document = exception_document(e, request_id)
    return failure(document)


def failure(document: dict) -> dict:
    """The error reply, logged as the runtime logs it."""
    print(f"[ERROR] {document['errorType']}: {document['errorMessage']}", flush=True)
    return {"error": document}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway.lambda_worker")
    parser.add_argument("--in-fd", type=int, required=True)
    parser.add_argument("--out-fd", type=int, required=True)
    args = parser.parse_args(argv)
    for fd in (args.in_fd, args.out_fd):
        os.set_inheritable(fd, False)  # the handler's own subprocesses must not hold the protocol open
    requests, replies = os.fdopen(args.in_fd, "rb"), os.fdopen(args.out_fd, "wb")

    def reply(message: dict) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(json.dumps(message).encode() + b"\n")
        replies.flush()

    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    logging.basicConfig(stream=sys.stdout, datefmt="%Y-%m-%dT%H:%M:%S",
                        format="[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s")
    logging.getLogger().handlers[0].addFilter(_RequestId())
    logging.Formatter.converter = time.gmtime
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except InitError as e:
        reply(failure(error_document(e.message, e.error_type, e.trace)))
        return 1
    except Exception as e:  # module code that raised during import
        reply(failure(exception_document(e)))
        return 1
    reply({"ready": True})
    for line in requests:  # EOF: the gateway is gone or retired this worker
        reply(invoke(handler, json.loads(line)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lambda ``Invoke`` (``POST /2015-03-31/functions/<name>/invocations``), answered as AWS answers boto3.

``invoke(...)`` is the same operation for in-process callers (the API route): same
limits, concurrency and error replies. The functions run in ``lambda_runtime``; a qualified invocation runs that
version's code and configuration, an alias routes by its weights (``lambda_versions``); ``Event`` invocations go
on the function's persisted queue (``lambda_async``).
"""

import base64
import binascii
import json
import time

from flask import Blueprint, Response, request

from . import iam, lambda_async, lambda_provisioner, lambda_runtime, lambda_versions
from .aws_errors import aws_error, request_id
from .emulator import signed_region
from .lambda_runtime import ServiceError

SYNC_LIMIT = 6291456  # bytes, request and response
EVENT_LIMIT = 1048576  # bytes, request: 1 MB, as botocore's Invoke documentation says (it was 256 KB until 2025)
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")

blueprint = Blueprint("lambda_api", __name__)
blueprint.record_once(lambda _: lambda_async.queue())  # events queued before a restart are delivered now
blueprint.record_once(lambda _: lambda_provisioner.start())


def _user_error(status: int, code: str, message: str) -> ServiceError:
    return ServiceError(status, code, message, Type="User")


def split_name(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """``fn``, ``fn:qualifier``, a full or partial ARN (with or without qualifier) → (name, qualifier)."""
    parts = name.split(":")
    if name.startswith("arn:"):
        parts = parts[6:]  # arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    elif len(parts) > 2 and parts[1] == "function":
        parts = parts[2:]  # <account>:function:<name>[:<qualifier>]
    if not parts or not parts[0] or len(parts) > 2:
        raise _user_error(400, "InvalidParameterValueException", f"Invalid function name: {name}")
    derived = parts[1] if len(parts) == 2 else None
    if derived and qualifier and derived != qualifier:
        raise _user_error(400, "InvalidParameterValueException",
                          "The derived qualifier from the function name does not match the specified qualifier.")
    return parts[0], derived or qualifier


def _check(payload: bytes, invocation_type: str) -> str:
    """The payload as JSON text, or the service's 400/413."""
    if invocation_type not in INVOCATION_TYPES:
        raise ServiceError(400, "InvalidParameterValueException",
                           f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to "
                           f"satisfy constraint: Member must satisfy enum value set: [{', '.join(INVOCATION_TYPES)}]")
    limit = EVENT_LIMIT if invocation_type == "Event" else SYNC_LIMIT
    if len(payload) > limit:
        operation = "InvokeAsync" if invocation_type == "Event" else "InvokeFunction"
        raise _user_error(413, "RequestTooLargeException",
                          f"Request must be smaller than {limit} bytes for the {operation} operation")
    try:
        text = payload.decode().strip() or "{}"  # no payload: an empty object
        json.loads(text)
    except ValueError as e:  # UnicodeDecodeError included
        raise _user_error(400, "InvalidRequestContentException",
                          f"Could not parse request body into json: Could not parse payload into json: {e}") from None
    return text


def invoke(name: str, payload: bytes, invocation_type: str = "RequestResponse", client_context: dict | None = None,
           *, qualifier: str | None = None, log_tail: bool = False) -> tuple[int, dict, bytes]:
    """Invoke a function as Lambda does; ``(status, headers, body)`` of the AWS reply, errors included.

    ``name``: a name, ``name:qualifier`` or ARN; ``client_context``: the decoded ``X-Amz-Client-Context``;
    ``log_tail``: add ``X-Amz-Log-Result`` (base64 of the invocation's last 4 KB of log).
    """
    try:
        text = _check(payload, invocation_type)
        name, qualifier = split_name(name, qualifier)
        fn = lambda_runtime.describe(name, lambda_versions.version(name, qualifier))
        arn = lambda_runtime.function_arn(fn.name, qualifier)
        rid = request_id()
        headers = {"X-Amzn-RequestId": rid}
        if invocation_type == "DryRun":
            return 204, headers, b""
        if invocation_type == "Event":
            lambda_async.queue().put(lambda_async.Event(rid, fn.name, qualifier, text, time.time()))
            return 202, headers, b""
        outcome = lambda_runtime.runtime().invoke(fn, rid, text, arn, client_context)
    except ServiceError as e:
        reply = aws_error(e.status, e.code, e.message, e.headers, **e.fields)
        return reply.status_code, dict(reply.headers), reply.get_data()
    body = outcome.body
    if len(body) > SYNC_LIMIT:
        body, outcome.error = json.dumps({
            "errorMessage": f"Response payload size exceeded maximum allowed payload size ({SYNC_LIMIT} bytes).",
            "errorType": "Function.ResponseSizeTooLarge"}).encode(), True
    headers.update({"Content-Type": outcome.content_type, "X-Amz-Executed-Version": fn.version})
    if outcome.error:
        headers["X-Amz-Function-Error"] = "Unhandled"
    if log_tail:
        headers["X-Amz-Log-Result"] = base64.b64encode(outcome.log).decode()
    return 200, headers, body


def _client_context(header: str | None) -> dict | None:
    if not header:
        return None
    try:
        value = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, dict):
        raise _user_error(400, "InvalidRequestContentException",
                          "Client context must be a valid Base64-encoded JSON object.")
    return value


def _refusal(name: str, qualifier: str | None) -> Response | None:
    """The caller's ``lambda:InvokeFunction`` on the ARN it invokes (qualified when it names a version or alias: a
    policy on the unqualified ARN does not cover it, as on AWS), refused with Lambda's 403."""
    try:
        name, qualifier = split_name(name, qualifier)
    except ServiceError:
        return None  # an invalid name: Invoke answers it
    return iam.refusal("lambda:InvokeFunction", lambda_runtime.function_arn(name, qualifier), signed_region(), 403)


@blueprint.post("/2015-03-31/functions/<path:name>/invocations")
def invocations(name: str) -> Response:
    denied = _refusal(name, request.args.get("Qualifier"))
    if denied is not None:
        return denied
    try:
        client_context = _client_context(request.headers.get("X-Amz-Client-Context"))
    except ServiceError as e:
        return aws_error(e.status, e.code, e.message, **e.fields)
    status, headers, body = invoke(name, request.get_data(), request.headers.get("X-Amz-Invocation-Type")
                                   or "RequestResponse", client_context, qualifier=request.args.get("Qualifier"),
                                   log_tail=request.headers.get("X-Amz-Log-Type") == "Tail")
    return Response(body, status, headers)

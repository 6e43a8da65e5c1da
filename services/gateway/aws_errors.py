"""AWS-shaped error replies (rest-json): the status, ``x-amzn-ErrorType`` and a JSON body boto3 parses."""

import json
import uuid

from flask import Response


def request_id() -> str:
    return str(uuid.uuid4())


def aws_error(status: int, code: str, message: str, headers: dict | None = None, **fields) -> Response:
    """An error boto3 raises as ``code``: botocore reads the code from ``x-amzn-ErrorType``,
    the message from ``Message`` and the modeled members from the other body keys."""
    body = {"Message": message, **fields}
    response = Response(json.dumps(body), status, content_type="application/json")
    response.headers["x-amzn-ErrorType"] = code
    response.headers["x-amzn-RequestId"] = request_id()
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response

"""Refusals as each AWS protocol answers them, so boto3 raises the code AWS would: S3's XML, the query services'
``ErrorResponse`` (EC2's ``Response``), and the JSON services' ``x-amzn-ErrorType``: 400 where the operation is
named by ``X-Amz-Target`` (awsJson: SageMaker, Logs, ECR), 403 for REST-JSON (Lambda, SageMaker Runtime)."""

import json
import uuid
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

from .sigv4 import SignatureError

QUERY = {"iam", "sts", "cloudformation", "autoscaling", "elasticloadbalancing", "rds", "sns", "ses", "elasticache",
         "redshift", "sdb"}

# A signature refusal's (status, code) per protocol, by SignatureError.kind.
S3_CODES = {"malformed": (400, "AuthorizationHeaderMalformed"), "unknown-key": (403, "InvalidAccessKeyId"),
            "invalid-token": (400, "InvalidToken"), "mismatch": (403, "SignatureDoesNotMatch"),
            "skewed": (403, "RequestTimeTooSkewed"), "expired": (403, "AccessDenied"),
            "content-sha256": (400, "XAmzContentSHA256Mismatch"), "missing": (403, "AccessDenied")}
QUERY_CODES = {"malformed": (400, "IncompleteSignature"), "unknown-key": (403, "InvalidClientTokenId"),
               "invalid-token": (403, "InvalidClientTokenId"), "mismatch": (403, "SignatureDoesNotMatch"),
               "skewed": (403, "SignatureDoesNotMatch"), "expired": (403, "SignatureDoesNotMatch"),
               "content-sha256": (400, "InvalidRequest"), "missing": (403, "MissingAuthenticationToken")}
JSON_CODES = {"malformed": "IncompleteSignatureException", "unknown-key": "UnrecognizedClientException",
              "invalid-token": "UnrecognizedClientException", "mismatch": "InvalidSignatureException",
              "skewed": "InvalidSignatureException", "expired": "InvalidSignatureException",
              "content-sha256": "InvalidSignatureException", "missing": "MissingAuthenticationTokenException"}
MESSAGES = {"unknown-key": "The security token included in the request is invalid.",
            "invalid-token": "The security token included in the request is invalid.",
            "missing": "Missing Authentication Token"}
S3_MESSAGES = {"unknown-key": "The AWS Access Key Id you provided does not exist in our records.",
               "invalid-token": "The provided token is malformed or otherwise invalid.",
               "skewed": "The difference between the request time and the current time is too large.",
               "missing": "Access Denied"}


def protocol(service: str) -> str:
    """``s3``, ``ec2``, ``query`` or ``json`` for a SigV4 signing name."""
    return service if service in ("s3", "ec2") else "query" if service in QUERY else "json"


def error(service: str, status: int, code: str, message: str) -> Response:
    """``code`` with ``message`` in ``service``'s protocol."""
    request_id = str(uuid.uuid4())
    kind = protocol(service)
    if kind == "json":
        return Response(json.dumps({"__type": code, "message": message}), status, content_type="application/json",
                        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id})
    code_x, message_x = escape(code), escape(message)
    if kind == "s3":
        body = f"<Error><Code>{code_x}</Code><Message>{message_x}</Message><RequestId>{request_id}</RequestId></Error>"
    elif kind == "ec2":
        body = (f"<Response><Errors><Error><Code>{code_x}</Code><Message>{message_x}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>")
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code_x}</Code><Message>{message_x}</Message>"
                f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + body, status, content_type="application/xml",
                    headers={"x-amzn-RequestId": request_id})


def signature_refusal(service: str, failure: SignatureError, targeted: bool = False) -> Response:
    """A refused signature (``failure.kind``, or ``missing``) as ``service`` answers it; ``targeted``: the request
    named its operation in ``X-Amz-Target`` (awsJson)."""
    kind = protocol(service)
    if kind == "ec2":
        return error(service, 401, "AuthFailure", failure.message)
    if kind == "json":
        status, code = 400 if targeted or failure.kind == "content-sha256" else 403, JSON_CODES[failure.kind]
    else:
        status, code = (S3_CODES if kind == "s3" else QUERY_CODES)[failure.kind]
    texts = S3_MESSAGES if kind == "s3" else MESSAGES
    message = failure.message if failure.kind in ("skewed", "expired") and kind != "s3" else \
        texts.get(failure.kind, failure.message)
    return error(service, status, code, message)

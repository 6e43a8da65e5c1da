"""The dogops prediction function: a dog photo in, the top-5 breeds from the SageMaker endpoint out.

The event is an API Gateway (REST, Lambda proxy) request whose body is JSON,
or that JSON itself from a direct invoke:

    {"url": "https://example.com/dog.jpg"}     the endpoint fetches the photo
    {"image": "<base64 JPEG or PNG>"}          at most 4.5 MB once decoded

A proxy request may also carry the photo itself as a base64 body with an image
Content-Type. The answer is always proxy-shaped, ``{"statusCode", "headers",
"body"}``, with a JSON body:

    200 {"endpoint": ..., "predictions": [{"rank", "breed", "probability", "log_probability"}, ...]}
    400 {"message": ...}  the input is bad, or the model refused it (e.g. a URL it may not fetch)
    502 {"message": ...}  the endpoint failed, timed out or does not exist
    500 {"message": ...}  the function is misconfigured (no ENDPOINT_NAME)

Configuration is environment only: ``ENDPOINT_NAME``, and boto3's own
variables (a local stack sets ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``). Needs
only the Lambda runtime's boto3.
"""

import base64
import binascii
import json
import logging
import os
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

TOPK = "application/vnd.dogops.topk+json"
TOP_K = 5
MAX_IMAGE_BYTES = 4_500_000  # base64 grows it by 4/3: the encoded event stays under Lambda's 6 MB
MAX_URL_LENGTH = 2048
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image", "application/octet-stream")
FIELDS = ("rank", "breed", "probability", "log_probability")

# Once per execution environment. The read timeout outlasts the endpoint's own 60 s limit, so its
# timeout error arrives; standard retries repeat throttling, 5xx and connection failures once.
runtime = boto3.client("sagemaker-runtime", config=Config(
    connect_timeout=5, read_timeout=65, retries={"mode": "standard", "total_max_attempts": 2}))


class BadInput(ValueError):
    """The request cannot be served as sent: answered 400 with this message."""


def _answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _error(status: int, message: str, context) -> dict:
    body = {"message": message}
    if getattr(context, "aws_request_id", None):
        body["requestId"] = context.aws_request_id
    return _answer(status, body)


def _header(headers: dict | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value or ""
    return ""


def _request(event) -> dict | bytes:
    """The request document (the event itself, or the JSON body of a proxy event), or a proxy body's image."""
    if not isinstance(event, dict):
        raise BadInput('send a JSON object: {"url": "https://..."} or {"image": "<base64>"}')
    if "body" not in event and "httpMethod" not in event:
        return event
    body = event.get("body") or ""
    content_type = _header(event.get("headers"), "content-type").split(";")[0].strip().lower()
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput("the request body is not valid base64") from None
        if content_type in IMAGE_TYPES:
            return raw
        body = raw
    if not body:
        raise BadInput('the request body is empty: send {"url": "https://..."} or {"image": "<base64>"}')
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadInput('send a JSON object: {"url": "https://..."} or {"image": "<base64>"}')
    return document


def _check_url(url) -> str:
    if not isinstance(url, str) or not url.strip():
        raise BadInput('"url" must be a non-empty string')
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise BadInput(f'"url" is longer than {MAX_URL_LENGTH} characters')
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise BadInput('"url" is not a valid URL') from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadInput('"url" must be an http(s) URL with a host, e.g. https://example.com/dog.jpg')
    return url


def _check_image(raw: bytes) -> bytes:
    if not raw:
        raise BadInput('"image" is empty')
    if len(raw) > MAX_IMAGE_BYTES:
        raise BadInput(f'"image" is {len(raw)} bytes; the limit is {MAX_IMAGE_BYTES} (send a "url" instead)')
    return raw


def _decode_image(image) -> bytes:
    if not isinstance(image, str):
        raise BadInput('"image" must be a base64 string')
    if image.startswith("data:"):  # a data URL, as browsers' FileReader makes
        image = image.partition(",")[2]
    if len(image) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadInput(f'"image" is over {MAX_IMAGE_BYTES} bytes once decoded (send a "url" instead)')
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput('"image" is not valid base64') from None


def parse(event) -> tuple[bytes, str]:
    """The InvokeEndpoint body and Content-Type for an event, or BadInput."""
    document = _request(event)
    if isinstance(document, bytes):
        return _check_image(document), "application/x-image"
    given = [key for key in ("url", "image") if document.get(key) is not None]
    if len(given) != 1:
        raise BadInput('send exactly one of "url" (an http(s) URL of a photo) or "image" (base64 JPEG or PNG)')
    if given == ["url"]:
        return json.dumps({"url": _check_url(document["url"])}).encode(), "application/json"
    return _check_image(_decode_image(document["image"])), "application/x-image"


def _model_error(exc: ClientError, endpoint: str, context) -> dict:
    """A ModelError: the container's 4xx is the caller's fault (400), anything else the endpoint's (502)."""
    status = exc.response.get("OriginalStatusCode")
    original = exc.response.get("OriginalMessage") or ""
    if isinstance(status, int) and 400 <= status < 500:
        try:
            message = json.loads(original)["message"]
        except (ValueError, KeyError, TypeError):
            message = original or f"the model rejected the input (status {status})"
        return _error(400, message, context)
    log.error("endpoint %s failed: %s", endpoint, exc)
    if status == 0:
        return _error(502, f"the model endpoint {endpoint} timed out", context)
    return _error(502, f"the model endpoint {endpoint} failed (status {status})", context)


def lambda_handler(event, context):
    try:
        body, content_type = parse(event)
    except BadInput as exc:
        return _error(400, str(exc), context)
    endpoint = os.environ.get("ENDPOINT_NAME")
    if not endpoint:
        log.error("ENDPOINT_NAME is not set")
        return _error(500, "the function is not configured (ENDPOINT_NAME)", context)
    try:
        response = runtime.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type, Accept=TOPK,
                                           CustomAttributes=f"top_k={TOP_K}")
        predictions = [{key: p[key] for key in FIELDS} for p in json.loads(response["Body"].read())["predictions"]]
    except runtime.exceptions.ModelError as exc:
        return _model_error(exc, endpoint, context)
    except ClientError as exc:
        log.error("endpoint %s: %s", endpoint, exc)
        return _error(502, f"the model endpoint {endpoint} is unavailable ({exc.response['Error']['Code']})",
                      context)
    except BotoCoreError as exc:
        log.error("endpoint %s: %s", endpoint, exc)
        return _error(502, f"the model endpoint {endpoint} could not be reached ({type(exc).__name__})", context)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("endpoint %s answered something unexpected: %r", endpoint, exc)
        return _error(502, f"the model endpoint {endpoint} answered in an unexpected format", context)
    return _answer(200, {"endpoint": endpoint, "predictions": predictions})

"""Lambda function URLs, in path form on the gateway: ``<gateway>/lambda-url/<url-id>/<path>`` is AWS's
``https://<url-id>.lambda-url.<region>.on.aws/<path>`` (the ``FunctionUrl`` the emulator hands out,
``services.emulator.lambda_urls``). Any method, any path below it.

- web origins: a request from a browser (``Origin``) is refused (403 ``Forbidden``) unless the URL's ``Cors``
  configuration allows that origin (``AllowOrigins``, ``*`` for any) or it is the stack's own; an allowed origin
  gets AWS's CORS headers, and a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here;
- auth: ``AWS_IAM`` needs a SigV4-signed request (verified, ``signatures``) whose key may ``lambda:InvokeFunctionUrl`` and
  ``lambda:InvokeFunction`` on the URL's function ARN (``iam``); otherwise 403 ``{"Message":"Forbidden"}``.
  ``NONE``: anyone;
- the request becomes AWS's payload format 2.0 event (version, routeKey ``$default``, rawPath, rawQueryString,
  cookies, lower-cased headers, queryStringParameters, requestContext, body and isBase64Encoded);
- the function (the URL's qualifier: its alias) runs through the gateway's Lambda ``Invoke`` (``lambda_api``);
- its result maps as AWS maps it: a JSON object with ``statusCode`` gives the status, headers, cookies and
  body (base64-decoded when ``isBase64Encoded``); any other result is 200 ``application/json`` with the result
  as the body; a function error or a malformed answer is 502, throttling 429, a request over 6 MB 413.
"""

import base64
import binascii
import json
import time
import uuid

from flask import Blueprint, Response, request
from werkzeug.datastructures import Headers

from ..security.guard import origin_allowed, web_origin
from ..stack import settings
from . import iam, lambda_api
from .emulator import Recent, client, signed_key

blueprint = Blueprint("function_url", __name__)

CACHE_SECONDS = 2.0  # a URL's configuration is reused this long
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
              "application/x-www-form-urlencoded")
_configs = Recent(CACHE_SECONDS)


def _message(status: int, message: str | None) -> Response:
    return Response(json.dumps({"Message": message}), status, content_type="application/json",
                    headers={"x-amzn-RequestId": str(uuid.uuid4())})


def find(url_id: str) -> dict | None:
    """The function URL config whose URL has ``url_id`` (ListFunctions, ListFunctionUrlConfigs on the emulator)."""
    return _configs.get(url_id, lambda: _scan(url_id))


def _scan(url_id: str) -> dict | None:
    lam = client("lambda")
    for page in lam.get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            for config in lam.list_function_url_configs(FunctionName=function["FunctionName"])["FunctionUrlConfigs"]:
                if f"/lambda-url/{url_id}/" in config["FunctionUrl"]:
                    return config
    return None


def _textual(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return not kind or kind.startswith(TEXT_TYPES) or kind.endswith(("+json", "+xml"))


def url_event(url_id: str, config: dict, raw_path: str, body: bytes, request_id: str) -> dict:
    """The current request as a function URL hands it to the function (payload format 2.0)."""
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        key = key.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    headers.setdefault("x-forwarded-for", request.remote_addr or "")
    headers.setdefault("x-forwarded-proto", request.scheme)
    region = config["FunctionArn"].split(":")[3]
    now = time.time()
    context = {
        "accountId": settings.ACCOUNT if config.get("AuthType") == "AWS_IAM" else "anonymous",
        "apiId": url_id, "domainName": f"{url_id}.lambda-url.{region}.on.aws", "domainPrefix": url_id,
        "http": {"method": request.method, "path": raw_path, "protocol": request.environ.get("SERVER_PROTOCOL"),
                 "sourceIp": request.remote_addr, "userAgent": request.headers.get("User-Agent")},
        "requestId": request_id, "routeKey": "$default", "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000)}
    if config.get("AuthType") == "AWS_IAM":
        context["authorizer"] = {"iam": {"accessKey": signed_key(), "accountId": settings.ACCOUNT, "callerId": None,
                                         "cognitoIdentity": None, "principalOrgId": None, "userArn": None,
                                         "userId": None}}
    event = {"version": "2.0", "routeKey": "$default", "rawPath": raw_path,
             "rawQueryString": request.query_string.decode("latin-1"), "headers": headers}
    if cookies:
        event["cookies"] = cookies
    if request.args:
        event["queryStringParameters"] = {key: ",".join(values) for key, values in request.args.lists()}
    event["requestContext"] = context
    encoded = False
    if body:
        try:
            text = body.decode("utf-8") if _textual(request.content_type or "") else None
        except UnicodeDecodeError:
            text = None
        encoded = text is None
        event["body"] = base64.b64encode(body).decode("ascii") if encoded else text
    event["isBase64Encoded"] = encoded
    return event


def url_response(status: int, headers: dict, body: bytes) -> Response:
    """The function's answer (``lambda_api.invoke``'s reply) as the function URL relays it."""
    lower = {key.lower(): value for key, value in headers.items()}
    if status == 429:
        return _message(429, "Rate Exceeded.")
    if status == 413:
        return _message(413, "Request Entity Too Large")
    if status != 200 or "x-amz-function-error" in lower:
        return Response("Internal Server Error", 502, content_type="application/json",
                        headers={"x-amzn-RequestId": lower.get("x-amzn-requestid", str(uuid.uuid4()))})
    try:
        result = json.loads(body)
    except ValueError:
        return Response("Internal Server Error", 502, content_type="application/json")
    if not (isinstance(result, dict) and "statusCode" in result):
        return Response(body, 200, content_type="application/json",
                        headers={"x-amzn-RequestId": lower.get("x-amzn-requestid", "")})
    try:
        code = int(result["statusCode"])
        payload = result.get("body") or ""
        data = base64.b64decode(payload, validate=True) if result.get("isBase64Encoded") else str(payload).encode()
        relayed = Headers({key: str(value) for key, value in (result.get("headers") or {}).items()})
        for cookie in result.get("cookies") or []:
            relayed.add("Set-Cookie", str(cookie))
    except (ValueError, TypeError, AttributeError, binascii.Error):
        return Response("Internal Server Error", 502, content_type="application/json")
    relayed.setdefault("Content-Type", "application/json")
    relayed["x-amzn-RequestId"] = lower.get("x-amzn-requestid", "")
    return Response(data, code, headers=relayed)


def _cors_headers(cors: dict, origin: str | None) -> dict | None:
    """The CORS headers for ``origin`` under the URL's configuration; None when that origin is refused."""
    if origin is None:
        return {}
    listed = cors.get("AllowOrigins") or []
    if origin not in listed and "*" not in listed:
        return {} if origin_allowed(request, origin) else None
    headers = {"Access-Control-Allow-Origin": origin if cors.get("AllowCredentials") or "*" not in listed else "*"}
    if cors.get("AllowCredentials"):
        headers["Access-Control-Allow-Credentials"] = "true"
    if cors.get("ExposeHeaders"):
        headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    return headers


def _preflight(cors: dict, headers: dict) -> Response:
    """AWS's answer to a CORS preflight: the allowed methods, headers and max age, or 403."""
    method = request.headers["Access-Control-Request-Method"].upper()
    methods = [m.upper() for m in cors.get("AllowMethods") or []]
    if not cors or (method not in methods and "*" not in methods):
        return _message(403, "Forbidden")
    headers = {**headers, "Access-Control-Allow-Methods": ",".join(methods)}
    if cors.get("AllowHeaders"):
        headers["Access-Control-Allow-Headers"] = ",".join(cors["AllowHeaders"])
    if cors.get("MaxAge"):
        headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
    return Response(status=200, headers=headers)


@blueprint.route("/lambda-url/<url_id>/", defaults={"path": ""}, methods=METHODS)
@blueprint.route("/lambda-url/<url_id>/<path:path>", methods=METHODS)
def function_url(url_id: str, path: str) -> Response:
    config = find(url_id)
    if config is None:
        return _message(404, None)
    arn = config["FunctionArn"]
    cors = config.get("Cors") or {}
    origin = web_origin(request)
    cross_site = origin is None and request.headers.get("Sec-Fetch-Site") == "cross-site"
    allowed = None if cross_site else _cors_headers(cors, origin)
    if allowed is None:
        return _message(403, "Forbidden")
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(cors, allowed)
    if config.get("AuthType") == "AWS_IAM":
        region = arn.split(":")[3]
        if signed_key() is None or any(iam.refusal(action, arn, region) is not None
                                       for action in ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction")):
            return _message(403, "Forbidden")
    body = request.get_data()
    if len(body) > lambda_api.SYNC_LIMIT:
        return _message(413, "Request Entity Too Large")
    request_id = str(uuid.uuid4())
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    prefix = f"/lambda-url/{url_id}"
    raw_path = raw.split("?", 1)[0][len(prefix):] if raw.startswith(prefix + "/") else "/" + path
    event = url_event(url_id, config, raw_path, body, request_id)
    response = url_response(*lambda_api.invoke(arn, json.dumps(event).encode()))
    response.headers.update(allowed)
    return response

"""The AWS emulator: moto's server (S3, IAM, STS, Lambda and SageMaker control planes, ...).

In front of it, the stack's guard (``services.security.guard``: Host, web origins, no ``/moto-api/``) and SigV4:
every signed request's signature is verified against its key's secret (the root key's is the stack's own, an IAM
user's or an STS session's is moto's), with AWS's refusals per protocol (``services.security``). The ``/_dogops/``
routes take only requests signed with the root key (``/_dogops/health`` aside).

Four additions moto lacks:
- ``POST /_dogops/iam/secret`` with JSON ``{access_key_id, session_token?, region?}``: the key's secret
  (``{"secret"}``, or ``{"kind", "message"}`` for an unknown key or token), with which the gateway verifies the
  signatures of the requests it answers itself;
- ``POST /_dogops/iam/authorize`` with JSON ``{access_key_id, session_token?, action, resource, region?}``:
  the principal behind the key and whether its identity-based policies allow the action on the
  resource (``iam_authorize``), for the gateway's data planes;
- under ``/_dogops/``, the deployed code of a Lambda function, handed out as AWS does: the pre-signed
  ``Code.Location`` of ``GetFunction`` (valid 10 minutes). The gateway downloads it and checks it against the
  function's ``CodeSha256``;
- under ``/_dogops/hosting/``, which endpoints run in their own containers (``sagemaker_endpoints``, which
  also adds SageMaker's ``UpdateEndpoint``).

IAM's policy simulator answers from the enforced policies (``iam_simulate``); SageMaker's describes are shaped as
AWS's (``sagemaker_describes``); an action or a route moto lacks, and any failure of moto, is answered as AWS
would, never as an HTML page (``unimplemented``).

With ``--state-dir`` (``DOGOPS_EMULATOR_STATE_DIR``) the state lasts: every successful mutating request is journaled
there and replayed on start (``persistence``); ``/_dogops/health`` (and the ``X-Dogops-Boot-Id`` header of every answer) names this process's ``boot_id``,
which changes with every start, so a client holding anything from an earlier emulator (credentials, routes) knows to renew it.

IAM is enforced on every request not signed with the stack's own key, the account root (``iam_enforcement``;
``DOGOPS_IAM_ENFORCE=0`` turns it off).

Bounded (``services.security.admission``): at most ``DOGOPS_EMULATOR_MAX_REQUESTS`` (64) requests at once, the rest
answered with the called service's throttling error (``/_dogops/`` not counted); at most
``DOGOPS_EMULATOR_MAX_CONNECTIONS`` (256) connection threads; keep-alive connections idle for
``DOGOPS_EMULATOR_IDLE_TIMEOUT`` (60) seconds are closed.

With ``DOGOPS_REGISTRY_URL`` set, ECR's proxy endpoint and repository URIs name that local
registry (``ecr``).

    python -m services.emulator [--host 127.0.0.1] [--port 5000] [--state-dir DIR]
"""

import argparse
import json
import logging
import os
import signal
import sys
import uuid
from pathlib import Path

from moto.awslambda.responses import LambdaResponse
from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.utilities.utils import get_partition
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from ..security import refusals, sigv4
from ..security.admission import Admission, BoundedServer
from ..security.guard import Guard, raw_uri, read_body
from ..stack import settings
from . import (  # noqa: F401 (each patches moto)
    autoscaling,
    autoscaling_cloudformation,
    cloudformation,
    cloudwatch,
    cloudwatch_logs,
    ec2_shutdown,
    ecr,
    iam_enforcement,
    iam_simulate,
    lambda_async_config,
    lambda_layers,
    lambda_limits,
    lambda_locations,
    lambda_versions,
    sagemaker_describes,
    sagemaker_endpoints,
    sagemaker_lists,
    sagemaker_training,
    sagemaker_tuning,
    scheduler,
    unimplemented,
)
from .iam_authorize import authorize
from .persistence import Store

PREFIX = "/_dogops/"
BOOT_ID = uuid.uuid4().hex  # this process's: a restarted emulator answers another
BOOT_HEADER = "X-Dogops-Boot-Id"  # on every answer, with BOOT_ID


def _get_function(self) -> str:
    """moto's ``GetFunction``, with ``Code.Location`` a pre-signed URL of the code on this emulator
    (``lambda_locations``)."""
    answer = json.loads(_moto_get_function(self))
    function = answer["Configuration"]
    if "Location" in answer.get("Code", {}):
        region = function["FunctionArn"].split(":")[3]
        named = function["FunctionArn"].split(":", 6)[6]  # name[:version]: a published version's own code
        answer["Code"]["Location"] = lambda_locations.presigned(self.headers["Host"],
                                                                f"{PREFIX}lambda/{region}/{named}/code", region)
    return json.dumps(answer)


_moto_get_function = LambdaResponse.get_function
LambdaResponse.get_function = _get_function


def _function_code(request: Request) -> Response:
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda.models import lambda_backends

    parts = request.path[len(PREFIX):].split("/")  # lambda/<region>/<name>/code
    if len(parts) != 4 or parts[0] != "lambda" or parts[3] != "code":
        return Response("not found\n", 404)
    try:
        function = lambda_backends[settings.ACCOUNT][parts[1]].get_function(parts[2])
    except (UnknownFunctionException, KeyError):
        return Response("no such function\n", 404)
    return Response(function.code_bytes, 200, content_type="application/zip")


def _authorize(request: Request) -> Response:
    try:
        query = json.loads(request.get_data())
        answer = authorize(query["access_key_id"], query["action"], query["resource"], query.get("session_token"),
                           query.get("region") or settings.REGION)
    except (ValueError, KeyError, TypeError) as exc:
        return Response(json.dumps({"error": f"bad request: {exc!r}"}), 400, content_type="application/json")
    return Response(json.dumps(answer), 200, content_type="application/json")


def _secret_of(signed: sigv4.Signed) -> str:
    """The secret of a signed key: the root's, an IAM user's or an STS session's (whose token must match)."""
    if signed.key == settings.ACCESS_KEY and not signed.token:
        return settings.root_secret()
    headers = {"X-Amz-Security-Token": signed.token} if signed.token else {}
    try:
        return create_access_key(settings.ACCOUNT, get_partition(signed.region), signed.key,
                                 headers).create_credentials().secret_key
    except CreateAccessKeyFailure as exc:
        kind = "invalid-token" if exc.reason == "InvalidToken" or signed.key == settings.ACCESS_KEY else "unknown-key"
        raise sigv4.SignatureError(kind, "The security token included in the request is invalid.") from None


def _service_of(request: Request) -> str:
    """The signing name of the request's credential scope (for the refusal's protocol); ``dogops`` if none."""
    credential = request.args.get("X-Amz-Credential") or request.headers.get("Authorization", "").partition(
        "Credential=")[2]
    parts = credential.split(",")[0].split("/")
    return parts[3] if len(parts) > 3 else "dogops"


def check_request(request: Request) -> Response | None:
    """The guard's last step: refuse a request whose signature AWS would refuse; the internal routes take only
    the root key."""
    internal = request.path.startswith(PREFIX) and request.path != PREFIX + "health"
    try:
        signed = sigv4.check(request.method, raw_uri(request.environ), request.headers, read_body(request),
                             _secret_of)
        if signed is None and internal:
            raise sigv4.SignatureError("missing", "Missing Authentication Token")
    except sigv4.SignatureError as failure:
        return refusals.signature_refusal(_service_of(request), failure, "X-Amz-Target" in request.headers)
    if internal and (signed.key != settings.ACCESS_KEY or signed.token):
        return refusals.error("dogops", 403, "AccessDeniedException", "the stack's internal routes take only its "
                              "root key")
    return None


def _secret(request: Request) -> Response:
    """``/_dogops/iam/secret``: the secret of a key (and session token) the gateway verifies a signature with."""
    try:
        query = json.loads(request.get_data())
        signed = sigv4.Signed(query["access_key_id"], "", query.get("region") or settings.REGION, "", (), "",
                              query.get("session_token"))
        answer = {"secret": _secret_of(signed)}
    except sigv4.SignatureError as failure:
        answer = {"kind": failure.kind, "message": failure.message}
    except (ValueError, KeyError, TypeError) as exc:
        return Response(json.dumps({"error": f"bad request: {exc!r}"}), 400, content_type="application/json")
    return Response(json.dumps(answer), 200, content_type="application/json")


def _backend_app(service: str):
    """moto's application for ``service``; a path none of its routes takes is answered in AWS's shape."""
    import flask

    app = create_backend_app(service)
    app.register_error_handler(NotFound, lambda _: unimplemented.unknown(
        _service_of(flask.request), f"{_service_of(flask.request)}: {flask.request.method} {flask.request.path}", 404))
    return app


class Emulator:
    """moto's WSGI application (journaled in ``state_dir`` if given), plus ``GET /_dogops/health``, the signature,
    authorization and function code routes. What moto does not do, or fails on, is answered in AWS's shape
    (``unimplemented``)."""

    def __init__(self, state_dir: Path | None = None):
        self.moto = DomainDispatcherApplication(_backend_app)
        self.store = Store(state_dir, self._answer) if state_dir else None

    def __call__(self, environ, start_response):
        def start_response_with_boot(status, headers, exc_info=None):
            return start_response(status, [*headers, (BOOT_HEADER, BOOT_ID)], exc_info)

        return (self.store or self._answer)(environ, start_response_with_boot)

    def _answer(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            try:
                return self.moto(environ, start_response)
            except Exception as error:  # noqa: BLE001 (moto's server would answer its HTML 500)
                return unimplemented.failure(_service_of(Request(environ)), error)(environ, start_response)
        request = Request(environ)
        if path == PREFIX + "health":
            response = Response(json.dumps({"status": "ok", "boot_id": BOOT_ID}), 200, content_type="application/json")
        elif path == PREFIX + "iam/authorize" and request.method == "POST":
            response = _authorize(request)
        elif path == PREFIX + "iam/secret" and request.method == "POST":
            response = _secret(request)
        elif path.startswith(sagemaker_endpoints.PREFIX):
            response = sagemaker_endpoints.handle(request)
        elif lambda_layers.is_content(path):
            response = lambda_layers.content(request)
        else:
            response = _function_code(request)
        return response(environ, start_response)


def _bound(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {os.environ[name]!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.EMULATOR_PORT)
    parser.add_argument("--state-dir", type=Path, default=os.environ.get("DOGOPS_EMULATOR_STATE_DIR") or None,
                        help="journal the state there and restore it on start (default: in memory only)")
    args = parser.parse_args(argv)
    own = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    os.environ.setdefault("DOGOPS_EMULATOR_URL", f"http://{own}:{args.port}")  # its own writers' (CloudWatch) target
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    emulator = Emulator(args.state_dir)
    if emulator.store:
        print(f"emulator restored {emulator.store.restore()} from {args.state_dir}", flush=True)
    guarded = Guard(emulator, check_request, function_urls=False)
    admitted = Admission(guarded, {"requests": _bound("DOGOPS_EMULATOR_MAX_REQUESTS", 64)},
                         lambda environ: None if environ.get("PATH_INFO", "").startswith("/_dogops/") else "requests")
    server = BoundedServer(args.host, args.port, admitted, MotoRequestHandler,
                           _bound("DOGOPS_EMULATOR_MAX_CONNECTIONS", 256), _bound("DOGOPS_EMULATOR_IDLE_TIMEOUT", 60))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"emulator (moto) listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


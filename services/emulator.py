"""The AWS emulator: moto's server (S3, IAM, STS, Lambda and SageMaker control planes, ...).

Four additions moto lacks:
- ``POST /_dogops/iam/authorize`` with JSON ``{access_key_id, session_token?, action, resource, region?}``:
  the principal behind the key and whether its identity-based policies allow the action on the
  resource (``iam_authorize``), for the gateway's data planes;
- under ``/_dogops/``, the deployed code of a Lambda function, which AWS hands out as
  the pre-signed ``Code.Location`` of ``GetFunction``. The gateway downloads it from
  there and checks it against the function's ``CodeSha256``;
- SageMaker ``UpdateEndpoint`` (a new endpoint config rolls the endpoint; moto answers
  500), needed to republish a retrained model. Like moto's ``CreateEndpoint``, the
  endpoint is ``InService`` at once;
- under ``/_dogops/hosting/``, which endpoints run in their own containers (``hosting_routes``).

IAM is enforced on every request not signed with the stack's own key, the account root (``iam_enforcement``;
``DOGOPS_IAM_ENFORCE=0`` turns it off).

With ``DOGOPS_REGISTRY_URL`` set, ECR's proxy endpoint and repository URIs name that local
registry (``ecr_gaps``).

    python -m services.emulator [--host 127.0.0.1] [--port 5000]
"""

import argparse
import json
import signal
import sys

from moto.core.responses import ActionResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sagemaker.responses import SageMakerResponse
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from . import cfn_gaps, ecr_gaps, hosting_routes, iam_enforcement, stack, training_gaps  # noqa: F401 (they patch moto)
from .iam_authorize import authorize

PREFIX = "/_dogops/"


def _update_endpoint(self) -> ActionResult:
    """``UpdateEndpoint`` on moto's SageMaker backend: the endpoint, now on the new config."""
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    old = backend.endpoints.get(name)
    if old is None:
        backend.describe_endpoint(name)  # raises moto's ValidationError for an unknown endpoint
    endpoint = cfn_gaps.roll_endpoint(backend, old, self._get_param("EndpointConfigName"), old.tags)
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerResponse.update_endpoint = _update_endpoint


def _function_code(request: Request) -> Response:
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda.models import lambda_backends

    parts = request.path[len(PREFIX):].split("/")  # lambda/<region>/<name>/code
    if len(parts) != 4 or parts[0] != "lambda" or parts[3] != "code":
        return Response("not found\n", 404)
    try:
        function = lambda_backends[stack.ACCOUNT][parts[1]].get_function(parts[2])
    except (UnknownFunctionException, KeyError):
        return Response("no such function\n", 404)
    return Response(function.code_bytes, 200, content_type="application/zip")


def _authorize(request: Request) -> Response:
    try:
        query = json.loads(request.get_data())
        answer = authorize(query["access_key_id"], query["action"], query["resource"], query.get("session_token"),
                           query.get("region") or stack.REGION)
    except (ValueError, KeyError, TypeError) as exc:
        return Response(json.dumps({"error": f"bad request: {exc!r}"}), 400, content_type="application/json")
    return Response(json.dumps(answer), 200, content_type="application/json")


class Emulator:
    """moto's WSGI application, plus ``GET /_dogops/health``, the authorization and the function code routes."""

    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.moto(environ, start_response)
        request = Request(environ)
        if path == PREFIX + "health":
            response = Response('{"status": "ok"}', 200, content_type="application/json")
        elif path == PREFIX + "iam/authorize" and request.method == "POST":
            response = _authorize(request)
        elif path.startswith(hosting_routes.PREFIX):
            response = hosting_routes.handle(request)
        else:
            response = _function_code(request)
        return response(environ, start_response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=stack.EMULATOR_PORT)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, Emulator(), threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"emulator (moto) listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lambda layers' content, handed out as AWS hands it out: ``GetLayerVersion``'s ``Content.Location`` is a URL of
the layer's zip on this emulator, pre-signed with the root key for 10 minutes (moto answers ``s3://``), served at
``/_dogops/lambda/<region>/layers/<name>/<version>/content`` (the gateway unpacks it into a function's ``/opt``).
"""

import json
from urllib.parse import quote, unquote

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from moto.awslambda.responses import LambdaResponse
from werkzeug.wrappers import Request, Response

from ..security import sigv4
from ..stack import settings

PREFIX = "/_dogops/lambda/"
LOCATION_EXPIRES_S = 600


def _get_layer_version(self) -> str:
    answer = json.loads(_moto_get_layer_version(self))
    region = answer["LayerVersionArn"].split(":")[3]
    name = answer["LayerArn"].rsplit(":", 1)[1]
    url = f"http://{self.headers['Host']}{PREFIX}{region}/layers/{quote(name)}/{answer['Version']}/content"
    aws = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(sigv4.root_credentials(), "lambda", region, expires=LOCATION_EXPIRES_S).add_auth(aws)
    answer["Content"]["Location"] = aws.url
    return json.dumps(answer)


_moto_get_layer_version = LambdaResponse.get_layer_version
LambdaResponse.get_layer_version = _get_layer_version


def is_content(path: str) -> bool:
    parts = path[len(PREFIX):].split("/")
    return path.startswith(PREFIX) and len(parts) == 5 and parts[1] == "layers" and parts[4] == "content"


def content(request: Request) -> Response:
    """The zip of ``/_dogops/lambda/<region>/layers/<name>/<version>/content``."""
    from moto.awslambda.exceptions import UnknownLayerException
    from moto.awslambda.models import lambda_backends

    region, _, name, version, _ = request.path[len(PREFIX):].split("/")
    try:
        layer = lambda_backends[settings.ACCOUNT][region].get_layer_version(unquote(name), version)
    except (UnknownLayerException, KeyError, ValueError):
        return Response("no such layer version\n", 404)
    return Response(layer.code_bytes, 200, content_type="application/zip")

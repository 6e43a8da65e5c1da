"""Lambda layers' content, handed out as AWS hands it out: ``GetLayerVersion``'s ``Content.Location`` is a URL of
the layer's zip on this emulator, pre-signed (``lambda_locations``; moto answers ``s3://``), served at
``/_dogops/lambda/<region>/layers/<name>/<version>/content`` (the gateway unpacks it into a function's ``/opt``).
"""

import json
from urllib.parse import unquote

from moto.awslambda.responses import LambdaResponse
from werkzeug.wrappers import Request, Response

from ..stack import settings
from . import lambda_locations

PREFIX = "/_dogops/lambda/"


def _get_layer_version(self) -> str:
    answer = json.loads(_moto_get_layer_version(self))
    region = answer["LayerVersionArn"].split(":")[3]
    name = answer["LayerArn"].rsplit(":", 1)[1]
    path = f"{PREFIX}{region}/layers/{name}/{answer['Version']}/content"
    answer["Content"]["Location"] = lambda_locations.presigned(self.headers["Host"], path, region)
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

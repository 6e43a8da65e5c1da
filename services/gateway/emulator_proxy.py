"""Every request the gateway does not answer itself goes on to the emulator, unchanged (its request target as
the client sent it, which its signature covers), but for the emulator's internal ``/_dogops/`` routes: 404. The one
exception is a function's code, which ``GetFunction`` through the gateway hands out as a URL on the gateway
(``Code.Location``), pre-signed with the root key: the emulator checks that signature.

So ``AWS_ENDPOINT_URL_LAMBDA`` may name the gateway: ``Invoke`` runs here, and
``CreateFunction``, ``GetFunction`` and the rest of Lambda's control plane reach moto. While the emulator is down
(restarting), the answer is a 503 ``ServiceUnavailable`` in the service's protocol, at once.
"""

import re

import requests
from flask import Response, request

from ..security import refusals
from ..security.guard import raw_uri
from ..stack import settings

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding"}
CODE_LOCATION = re.compile(r"/_dogops/lambda/[^/]+/[^/]+/code")
_session = requests.Session()


def forward(path: str = "") -> Response:
    """Send the current request to the emulator and relay its answer."""
    if request.path.startswith("/_dogops/") and not CODE_LOCATION.fullmatch(request.path):
        return Response('{"message": "not found"}', 404, content_type="application/json")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    try:
        upstream = _session.request(request.method, settings.emulator_url() + raw_uri(request.environ),
                                    headers=headers, data=request.get_data(), allow_redirects=False, timeout=60)
    except requests.RequestException as exc:
        signed = request.environ.get("dogops.signed")
        return refusals.error(signed.service if signed else "dogops", 503, "ServiceUnavailable",
                              f"the stack's emulator did not answer (restarting?): {type(exc).__name__}")
    relayed = [(k, v) for k, v in upstream.raw.headers.items() if k.lower() not in HOP_BY_HOP]
    return Response(upstream.content, upstream.status_code, headers=relayed)

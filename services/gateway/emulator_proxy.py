"""Every request the gateway does not answer itself goes on to the emulator, unchanged (its request target as
the client sent it, which its signature covers), but for the emulator's internal ``/_dogops/`` routes: 404.

So ``AWS_ENDPOINT_URL_LAMBDA`` may name the gateway: ``Invoke`` runs here, and
``CreateFunction``, ``GetFunction`` and the rest of Lambda's control plane reach moto.
"""

import requests
from flask import Response, request

from .. import stack

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding"}
_session = requests.Session()


def forward(path: str = "") -> Response:
    """Send the current request to the emulator and relay its answer."""
    if request.path.startswith("/_dogops/"):
        return Response('{"message": "not found"}', 404, content_type="application/json")
    target = request.environ.get("RAW_URI") or request.full_path.rstrip("?")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    upstream = _session.request(request.method, stack.emulator_url() + target,
                                headers=headers, data=request.get_data(), allow_redirects=False, timeout=60)
    relayed = [(k, v) for k, v in upstream.raw.headers.items() if k.lower() not in HOP_BY_HOP]
    return Response(upstream.content, upstream.status_code, headers=relayed)

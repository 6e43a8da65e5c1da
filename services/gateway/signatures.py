"""SigV4 on the gateway: every signed request to a route the gateway answers itself (SageMaker Runtime, Lambda
``Invoke``, function URLs) is verified before the route runs, by the emulator, where the keys' secrets are
(``POST /_dogops/iam/verify``). What the gateway relays to the emulator is verified there.

A verified signature is kept on the request (``emulator.signed_key``, ``signed_region`` read it); an unsigned request goes on, and each route decides
(a function URL with ``AuthType NONE`` takes it; ``iam.refusal`` refuses it).
"""

import requests
from flask import Response, request

from .. import stack
from ..security import refusals, sigv4
from .aws_errors import aws_error

RELAYED = {"emulator", "emulator_root"}  # endpoints the emulator answers (and verifies)
MAX_VERIFIED_BYTES = 32 << 20  # above every limit of the gateway's routes (6 MB): such a body is not read
_session = requests.Session()

def verified() -> sigv4.Signed | None:
    """The request's verified signature, None when it is unsigned."""
    return request.environ.get("dogops.signed")

def _refusal(service: str, failure: sigv4.SignatureError) -> Response:
    if request.path.startswith("/lambda-url/"):
        return Response('{"Message":"Forbidden"}', 403, content_type="application/json")
    return refusals.signature_refusal(service, failure)

def verify_request() -> Response | None:
    """Flask ``before_request``: refuse a request whose signature AWS would refuse."""
    if request.endpoint in RELAYED:
        return None
    signed = None
    try:
        signed = sigv4.parse(request.headers, request.query_string.decode("latin-1"))
        if signed is None:
            return None
        if (request.content_length or 0) > MAX_VERIFIED_BYTES:
            return None  # left unverified, so refused as unsigned where a signature is needed (or as too large)
        payload = sigv4.payload_hash(signed, request.headers, request.get_data())
    except sigv4.SignatureError as failure:
        return _refusal(signed.service if signed else "lambda", failure)
    uri = request.environ.get("RAW_URI") or request.full_path.rstrip("?")
    try:
        answer = _session.post(f"{stack.emulator_url()}/_dogops/iam/verify", auth=sigv4.RootAuth(), timeout=10, json={
            "method": request.method, "uri": uri, "headers": dict(request.headers.items()), "payload_sha256": payload})
        answer.raise_for_status()
        outcome = answer.json()
    except (requests.RequestException, ValueError) as exc:
        return aws_error(503, "ServiceUnavailableException", f"could not verify the request's signature: {exc}")
    if not outcome["ok"]:
        return _refusal(signed.service, sigv4.SignatureError(outcome["kind"], outcome["message"]))
    request.environ["dogops.signed"] = signed
    return None

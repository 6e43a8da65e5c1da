"""SigV4 on the gateway: every signed request to a route the gateway answers itself (SageMaker Runtime, Lambda
``Invoke``, function URLs) is verified before the route runs, with the secret of its key as the emulator knows it
(``POST /_dogops/iam/secret``, reused for ``CACHE_SECONDS``). What the gateway relays to the emulator is verified
there.

A verified signature is kept on the request (``emulator.signed_key`` and ``signed_region`` read it); an unsigned
request goes on, and each route decides (a function URL with ``AuthType NONE`` takes it; ``iam.refusal`` refuses
it).
"""

import requests
from flask import Response, request

from ..security import refusals, sigv4
from ..security.guard import raw_uri
from ..stack import settings
from .aws_errors import aws_error
from .emulator import Recent

RELAYED = {"emulator", "emulator_root"}  # endpoints the emulator answers (and verifies)
CACHE_SECONDS = 1.0  # a key's secret is reused this long (a deleted key's signatures stop verifying after it)
MAX_VERIFIED_BYTES = 32 << 20  # above every limit of the gateway's routes (6 MB): such a body is not read
_session = requests.Session()
_secrets = Recent(CACHE_SECONDS)


def _refusal(service: str, failure: sigv4.SignatureError) -> Response:
    if request.path.startswith("/lambda-url/"):
        return Response('{"Message":"Forbidden"}', 403, content_type="application/json")
    return refusals.signature_refusal(service, failure)


def _secret_of(signed: sigv4.Signed) -> str:
    """The secret of the signed key (and session token), reused a moment; ``SignatureError`` for an unknown one."""

    def ask() -> str:
        answer = _session.post(f"{settings.emulator_url()}/_dogops/iam/secret", auth=sigv4.RootAuth(),
                               timeout=settings.emulator_timeout(),
                               json={"access_key_id": signed.key, "session_token": signed.token,
                                     "region": signed.region})
        answer.raise_for_status()
        found = answer.json()
        if "secret" not in found:
            raise sigv4.SignatureError(found["kind"], found["message"])
        return found["secret"]

    return _secrets.get((signed.key, signed.token, signed.region), ask)


def verify_request() -> Response | None:
    """Flask ``before_request``: refuse a request whose signature AWS would refuse."""
    if request.endpoint in RELAYED:
        return None
    signed = None
    try:
        signed = sigv4.parse(request.headers, request.query_string.decode("latin-1"))
        if signed is None or (request.content_length or 0) > MAX_VERIFIED_BYTES:
            return None  # unsigned, or left unverified: refused as unsigned where a signature is needed (or too big)
        sigv4.check(request.method, raw_uri(request.environ), request.headers, request.get_data(), _secret_of)
    except sigv4.SignatureError as failure:
        return _refusal(signed.service if signed else "lambda", failure)
    except (requests.RequestException, ValueError) as exc:
        return aws_error(503, "ServiceUnavailableException", f"could not verify the request's signature: {exc}")
    request.environ["dogops.signed"] = signed
    return None

"""Authorization of the gateway's data-plane calls as AWS does it: the caller's verified access key (SigV4,
``signatures``, plus ``X-Amz-Security-Token`` for temporary credentials) is checked against its
identity-based policies on the emulator (``POST /_dogops/iam/authorize``), and a refusal is answered as AWS's
JSON services answer it.

``DOGOPS_IAM_ENFORCE=0`` turns the check off (on by default). A decision is reused for ``CACHE_SECONDS``, so the
hot path costs one dictionary lookup; a policy change reaches callers after that, as IAM's own does after a while.
"""


import requests
from flask import Response, request

from ..security.sigv4 import RootAuth
from ..stack import settings
from .aws_errors import aws_error
from .emulator import Recent, signed_key

CACHE_SECONDS = 1.0
UNRECOGNIZED = ("unknown-key", "invalid-token")

_decisions = Recent(CACHE_SECONDS)
_session = requests.Session()


def _decide(key: str, token: str | None, action: str, resource: str, region: str) -> dict:
    """The emulator's answer for this key, action and resource, reused for ``CACHE_SECONDS``."""

    def ask() -> dict:
        answer = _session.post(settings.emulator_url() + "/_dogops/iam/authorize", auth=RootAuth(),
                               timeout=settings.emulator_timeout(), json={
            "access_key_id": key, "session_token": token, "action": action, "resource": resource, "region": region})
        answer.raise_for_status()
        return answer.json()

    return _decisions.get((key, token, action, resource, region), ask)


def refusal(action: str, resource: str, region: str, status: int = 400) -> Response | None:
    """None when the caller may perform ``action`` on ``resource``; else AWS's error reply (``AccessDeniedException``
    with ``status``: 400 for SageMaker, 403 for Lambda); an unsigned request is refused even where IAM is not
    enforced."""
    key = signed_key()
    if key is None:
        return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if not settings.iam_enforced():
        return None
    decision = _decide(key, request.headers.get("X-Amz-Security-Token"), action, resource, region)
    if decision["allowed"]:
        return None
    if decision["decision"] in UNRECOGNIZED:
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    return aws_error(status, "AccessDeniedException", decision["message"])

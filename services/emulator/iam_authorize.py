"""Identity-based authorization on the emulator: the principal behind an access key and whether its policies
allow an action on a resource, decided by moto's own policy evaluation (``moto.iam.access_control``).

Explicit Deny wins, then an Allow, else the default deny. The stack's own credentials (``testing``) are the
emulator's admin, the account root; any other key moto does not know is refused.
"""

from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicy, PermissionResult, create_access_key
from moto.utilities.utils import get_partition

from ..stack import settings

ALLOWED, EXPLICIT_DENY, NO_ALLOW = "allowed", "explicit-deny", "no-allow"
UNKNOWN_KEY, INVALID_TOKEN = "unknown-key", "invalid-token"


def authorize(access_key_id: str, action: str, resource: str, session_token: str | None = None,
              region: str = settings.REGION) -> dict:
    """``{"allowed", "decision", "principal"}`` for ``action`` on ``resource`` by this key (and session token,
    which temporary credentials need, as on AWS); a refusal adds ``message``, AWS's wording of it."""
    partition = get_partition(region)
    if access_key_id == settings.ACCESS_KEY:
        return {"allowed": True, "decision": ALLOWED, "principal": f"arn:{partition}:iam::{settings.ACCOUNT}:root"}
    headers = {"X-Amz-Security-Token": session_token} if session_token else {}
    try:
        key = create_access_key(settings.ACCOUNT, partition, access_key_id, headers)
    except CreateAccessKeyFailure as exc:
        return {"allowed": False, "decision": INVALID_TOKEN if exc.reason == "InvalidToken" else UNKNOWN_KEY,
                "principal": None}
    results = {IAMPolicy(policy).is_action_permitted(action, resource) for policy in key.collect_policies()}
    decision = (EXPLICIT_DENY if PermissionResult.DENIED in results
                else ALLOWED if PermissionResult.PERMITTED in results else NO_ALLOW)
    answer = {"allowed": decision == ALLOWED, "decision": decision, "principal": key.arn}
    if decision != ALLOWED:
        answer["message"] = denial_message(key.arn, action, resource, decision)
    return answer


def denial_message(principal: str, action: str, resource: str, decision: str) -> str:
    """AWS's words for a refused request: why, when an identity-based policy decided it."""
    why = {EXPLICIT_DENY: " with an explicit deny in an identity-based policy",
           NO_ALLOW: f" because no identity-based policy allows the {action} action"}.get(decision, "")
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource}{why}"

"""Identity-based authorization on the emulator: the principal behind an access key, its policies, and whether they
allow an action on a resource, each statement judged by moto's own policy evaluation (``moto.iam.access_control``).

Explicit Deny wins, then an Allow, else the default deny. The stack's own credentials (``testing``) are the
emulator's admin, the account root; any other key moto does not know is refused. :func:`evaluate` is the one
evaluation behind both :func:`authorize` (enforcement, the gateway) and the policy simulator (``iam_simulate``).
"""

import json
from dataclasses import dataclass

from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicyStatement, PermissionResult, create_access_key
from moto.iam.models import AWSManagedPolicy, iam_backends
from moto.utilities.utils import get_partition

from ..stack import settings

ALLOWED, EXPLICIT_DENY, NO_ALLOW = "allowed", "explicit-deny", "no-allow"
UNKNOWN_KEY, INVALID_TOKEN = "unknown-key", "invalid-token"


@dataclass(frozen=True)
class Policy:
    """A policy as the policy simulator names it: ``SourcePolicyId``, ``SourcePolicyType`` (``user``, ``group``,
    ``role``, ``aws-managed``, ``user-managed`` or ``none``) and its JSON document."""

    id: str
    type: str
    document: str


@dataclass(frozen=True)
class Decision:
    """:func:`evaluate`'s answer: ``decision`` and the statements that made it, as (policy, statement index)."""

    decision: str
    matched: tuple[tuple[Policy, int], ...]


def statements(document: str) -> list[dict]:
    """A policy document's statements (``Statement`` may be one object or a list)."""
    statement = json.loads(document)["Statement"]
    return statement if isinstance(statement, list) else [statement]


def evaluate(policies: list[Policy], action: str, resource: str, context: dict[str, str] | None = None) -> Decision:
    """``action`` on ``resource`` under ``policies``: each statement as moto judges it (``context``: condition
    keys' values), an explicit Deny over an Allow over the default deny, with the statements that decided."""
    results: dict[PermissionResult, list[tuple[Policy, int]]] = {PermissionResult.DENIED: [],
                                                                   PermissionResult.PERMITTED: []}
    for policy in policies:
        for index, statement in enumerate(statements(policy.document)):
            result = IAMPolicyStatement(statement).is_action_permitted(action, resource, None, context)
            if result in results:
                results[result].append((policy, index))
    if results[PermissionResult.DENIED]:
        return Decision(EXPLICIT_DENY, tuple(results[PermissionResult.DENIED]))
    if results[PermissionResult.PERMITTED]:
        return Decision(ALLOWED, tuple(results[PermissionResult.PERMITTED]))
    return Decision(NO_ALLOW, ())


def identity_policies(arn: str) -> list[Policy]:
    """The identity-based policies of the user, group or role ``arn`` names (an assumed role's session: its role's;
    a user's: its groups' too), inline then managed. moto's ``NoSuchEntity`` for an unknown one."""
    partition, account, resource = arn.split(":")[1], arn.split(":")[4], arn.split(":", 5)[5]
    kind, name = resource.split("/")[0], resource.split("/")[-1]
    backend = iam_backends[account][partition]
    if kind == "assumed-role":
        kind, name = "role", resource.split("/")[1]
    entity = {"user": backend.get_user, "role": backend.get_role, "group": backend.get_group}[kind](name)
    found = _entity_policies(entity, kind)
    if kind == "user":
        for group in backend.get_groups_for_user(name):
            found += _entity_policies(group, "group")
    return found


def _entity_policies(entity, kind: str) -> list[Policy]:
    inline = [Policy(name, kind, document) for name, document in entity.policies.items()]
    managed = [Policy(policy.name, "aws-managed" if isinstance(policy, AWSManagedPolicy) else "user-managed",
                      next(version.document for version in policy.versions if version.is_default))
               for policy in entity.managed_policies.values()]
    return inline + managed


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
    decision = evaluate(identity_policies(key.arn), action, resource).decision
    answer = {"allowed": decision == ALLOWED, "decision": decision, "principal": key.arn}
    if decision != ALLOWED:
        answer["message"] = denial_message(key.arn, action, resource, decision)
    return answer


def denial_message(principal: str, action: str, resource: str, decision: str) -> str:
    """AWS's words for a refused request: why, when an identity-based policy decided it."""
    why = {EXPLICIT_DENY: " with an explicit deny in an identity-based policy",
           NO_ALLOW: f" because no identity-based policy allows the {action} action"}.get(decision, "")
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource}{why}"

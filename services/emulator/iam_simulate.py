"""IAM's policy simulator on moto's server (imported by ``services.emulator.server``), which moto lacks:
``SimulatePrincipalPolicy`` answers from the policies the emulator enforces, with the same evaluation
(``iam_authorize.evaluate``), and ``SimulateCustomPolicy`` from the documents it is given.

As on AWS: one ``EvaluationResult`` per action and resource (``*`` when no ``ResourceArns``), ``EvalDecision``
``allowed``, ``explicitDeny`` or ``implicitDeny``, the ``MatchedStatements`` that decided (the policy's name and type,
the statement's start and end line and column in its document), paged by ``MaxItems`` / ``Marker``. A user's
simulation takes its groups' policies too; ``PolicyInputList`` adds documents (``PolicyInputList.<n>``). As
enforcement, the simulator judges identity-based policies only: resource policies, permissions boundaries and
condition context entries are not evaluated.
"""

import json

from moto.core.responses import ActionResult
from moto.iam.exceptions import InvalidInput
from moto.iam.responses import IamResponse

from .iam_authorize import ALLOWED, EXPLICIT_DENY, Decision, Policy, evaluate, identity_policies

DECISIONS = {ALLOWED: "allowed", EXPLICIT_DENY: "explicitDeny"}  # else implicitDeny
DEFAULT_MAX_ITEMS = 100  # IAM's default page


def statement_spans(document: str) -> list[tuple[int, int]]:
    """Where each statement of a policy document starts and ends (offsets of its ``{`` and ``}``)."""
    decode = json.JSONDecoder().raw_decode

    def skip(i: int, chars: str = " \t\r\n") -> int:
        while i < len(document) and document[i] in chars:
            i += 1
        return i

    i = skip(0) + 1  # past the document's "{"
    while True:
        key, i = decode(document, skip(i, " \t\r\n,"))
        start = skip(skip(i) + 1)  # past ":"
        _, i = decode(document, start)
        if key == "Statement":
            break
    if document[start] == "{":
        return [(start, i - 1)]
    spans, i = [], start + 1
    while document[i := skip(i, " \t\r\n,")] != "]":
        _, end = decode(document, i)
        spans.append((i, end - 1))
        i = end
    return spans


def _position(document: str, offset: int) -> dict:
    return {"Line": document.count("\n", 0, offset) + 1, "Column": offset - document.rfind("\n", 0, offset)}


def _matched(decision: Decision) -> list[dict]:
    matched = []
    for policy, index in decision.matched:
        start, end = statement_spans(policy.document)[index]
        matched.append({"SourcePolicyId": policy.id, "SourcePolicyType": policy.type,
                        "StartPosition": _position(policy.document, start),
                        "EndPosition": _position(policy.document, end)})
    return matched


def _simulate(self, policies: list[Policy]) -> ActionResult:
    """The simulation of the request's actions on its resources under ``policies``, one page of it."""
    for policy in policies:
        try:
            json.loads(policy.document)["Statement"]
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(f"{policy.id} is not a policy document with a Statement") from None
    results = []
    for action in self._get_param("ActionNames") or []:
        for resource in self._get_param("ResourceArns") or ["*"]:
            decision = evaluate(policies, action, resource)
            results.append({"EvalActionName": action, "EvalResourceName": resource,
                            "EvalDecision": DECISIONS.get(decision.decision, "implicitDeny"),
                            "MatchedStatements": _matched(decision), "MissingContextValues": []})
    size = int(self._get_param("MaxItems") or DEFAULT_MAX_ITEMS)
    try:
        start = int(self._get_param("Marker") or 0)
    except ValueError:
        raise InvalidInput("Invalid Marker") from None
    answer = {"EvaluationResults": results[start:start + size], "IsTruncated": start + size < len(results)}
    if answer["IsTruncated"]:
        answer["Marker"] = str(start + size)
    return ActionResult(answer)


def _inputs(self) -> list[Policy]:
    return [Policy(f"PolicyInputList.{n}", "none", document)
            for n, document in enumerate(self._get_param("PolicyInputList") or [], 1)]


def _simulate_principal_policy(self) -> ActionResult:
    arn = self._get_param("PolicySourceArn")
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] not in ("iam", "sts") or parts[5].split("/")[0] not in (
            "user", "group", "role", "assumed-role"):
        raise InvalidInput(f"Invalid ARN {arn}: PolicySourceArn must name a user, group or role")
    return _simulate(self, identity_policies(arn) + _inputs(self))


def _simulate_custom_policy(self) -> ActionResult:
    return _simulate(self, _inputs(self))


IamResponse.simulate_principal_policy = _simulate_principal_policy
IamResponse.simulate_custom_policy = _simulate_custom_policy

"""Lambda versions: what moto lacks for aliases, provisioned concurrency and account settings; importing this
module patches it in.

- an alias's ``RoutingConfig`` is checked as AWS checks it: one additional version, a published one that exists,
  not the alias's own version, with a weight between 0 and 1, and an alias of ``$LATEST`` takes none (moto
  accepts anything, and the gateway would route to it);
- Put/Get/Delete/ListProvisionedConcurrencyConfigs on a version or an alias (``$LATEST``: AWS's
  ``InvalidParameterValueException``). A config is ``IN_PROGRESS`` until the gateway reports that many execution
  environments initialised, then ``READY``. Provisioned concurrency counts towards the function's reserved
  concurrency (never more than it) or, for a function without one, against the account's unreserved
  concurrency, of which 100 always stay unreserved (AWS's rule for reservations). A function whose init fails
  turns its config ``FAILED`` (``FUNCTION_ERROR_INIT_FAILURE``, AWS's reason);
- GetAccountSettings: ``ConcurrentExecutions`` is ``MOTO_LAMBDA_CONCURRENCY_QUOTA`` (AWS's default quota, 1000,
  when unset; moto checks reservations against the same variable), ``UnreservedConcurrentExecutions`` that minus
  the reservations and the provisioned concurrency of functions without one;
- for the gateway, with the stack's root key only: ``GET /2019-09-30/dogops/provisioned-concurrency`` (every
  config of the region) and ``POST`` there with ``{FunctionName, Qualifier, Requested, Allocated, Failed}`` (how
  many environments it keeps initialised).
"""

import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto.awslambda import urls
from moto.awslambda.exceptions import InvalidParameterValueException, LambdaClientError, ValidationException
from moto.awslambda.models import LambdaBackend, LambdaFunction, LambdaStorage, lambda_backends
from moto.awslambda.responses import LambdaResponse
from moto.core.utils import utcnow

from ..stack import settings

UNRESERVED_MINIMUM = 100
PRIVATE_PATH = "/2019-09-30/dogops/provisioned-concurrency"


def account_concurrency() -> int:
    return int(os.environ.get("MOTO_LAMBDA_CONCURRENCY_QUOTA") or 1000)


class ConfigNotFound(LambdaClientError):
    code = 404

    def __init__(self) -> None:
        super().__init__("ProvisionedConcurrencyConfigNotFoundException",
                         "No Provisioned Concurrency Config found for this function")


class ResourceConflict(LambdaClientError):
    code = 409

    def __init__(self, message: str) -> None:
        super().__init__("ResourceConflictException", message)


@dataclass
class Provisioned:
    requested: int
    allocated: int = 0
    failed: bool = False  # the function's init failed
    modified: str = ""

    def __post_init__(self):
        self.modified = utcnow().strftime("%Y-%m-%dT%H:%M:%S+0000")

    def to_json(self) -> dict[str, Any]:
        answer = {"RequestedProvisionedConcurrentExecutions": self.requested,
                  "AvailableProvisionedConcurrentExecutions": self.allocated,
                  "AllocatedProvisionedConcurrentExecutions": self.allocated,
                  "Status": "READY" if self.allocated >= self.requested else "FAILED" if self.failed
                  else "IN_PROGRESS", "LastModified": self.modified}
        if self.failed and self.allocated < self.requested:
            answer["StatusReason"] = "FUNCTION_ERROR_INIT_FAILURE"
        return answer


def provisioned(function: LambdaFunction) -> dict[str, Provisioned]:
    """A function's provisioned concurrency configs by qualifier (kept on its ``$LATEST``)."""
    if not hasattr(function, "provisioned"):
        function.provisioned = {}
    return function.provisioned


def _check_routing(storage: LambdaStorage, function_name: str, version: str | None, routing: dict | None) -> None:
    """The checks and messages of AWS, in its order (as LocalStack's parity tests recorded them)."""
    weights = (routing or {}).get("AdditionalVersionWeights") or {}
    if len(weights) > 1:
        raise InvalidParameterValueException("Number of items in AdditionalVersionWeights cannot be greater than 1")
    for extra, weight in weights.items():
        constraint = "routingConfig.additionalVersionWeights"
        if not 0 <= float(weight) < 1:
            raise LambdaClientError("ValidationException", f"1 validation error detected: Value '{{{extra}={weight}}}' "
                                    f"at '{constraint}' failed to satisfy constraint: Map value must satisfy "
                                    "constraint: [Member must have value less than or equal to 1.0, Member must have "
                                    "value greater than or equal to 0.0, Member must not be null]")
        if extra == version:
            raise InvalidParameterValueException(f"Invalid function version {extra}. Function version {extra} is "
                                                 "already included in routing configuration.")
        if version == "$LATEST":
            raise InvalidParameterValueException("$LATEST is not supported for an alias pointing to more than 1 "
                                                 "version")
        if not extra.isdigit():
            raise LambdaClientError("ValidationException", f"1 validation error detected: Value '{{{extra}={weight}}}' "
                                    f"at '{constraint}' failed to satisfy constraint: Map keys must satisfy "
                                    "constraint: [Member must have length less than or equal to 1024, Member must have "
                                    "length greater than or equal to 1, Member must satisfy regular expression pattern: "
                                    "[0-9]+, Member must not be null]")
        storage.get_function_by_name_or_arn_with_qualifier(function_name, extra)  # ResourceNotFoundException


_moto_put_alias = LambdaStorage.put_alias
_moto_update_alias = LambdaStorage.update_alias


def _put_alias(self: LambdaStorage, name: str, function_name: str, function_version: str, description: str,
               routing_config: dict | None):
    _check_routing(self, function_name, function_version, routing_config)
    return _moto_put_alias(self, name, function_name, function_version, description, routing_config)


def _update_alias(self: LambdaStorage, name: str, function_name: str, function_version: str | None,
                  description: str | None, routing_config: dict | None):
    version = function_version or self.get_alias(name, function_name).function_version
    routing = routing_config if routing_config is not None else self.get_alias(name, function_name).routing_config
    _check_routing(self, function_name, version, routing)
    return _moto_update_alias(self, name, function_name, function_version, description, routing_config)


_moto_delete_alias = LambdaStorage.delete_alias


def _delete_alias(self: LambdaStorage, name: str, function_name: str) -> None:
    """moto's, and the alias's provisioned concurrency goes with it, as on AWS."""
    _moto_delete_alias(self, name, function_name)
    function = self._functions.get(function_name, {}).get("latest")
    if function is not None:
        provisioned(function).pop(name, None)


LambdaStorage.put_alias = _put_alias
LambdaStorage.update_alias = _update_alias
LambdaStorage.delete_alias = _delete_alias


def _target(backend: LambdaBackend, path: str, qualifier: str | None) -> tuple[LambdaFunction, str | None]:
    name = unquote(path.split("/functions/", 1)[1].split("/", 1)[0])
    if name.startswith("arn:"):
        _, name, named = backend._lambdas.split_function_arn(name)
    else:
        name, _, named = name.partition(":")
    return backend._lambdas.get_function_by_name_forbid_qualifier(name), named or qualifier


def _unreserved(backend: LambdaBackend, skip: tuple[str, str] | None = None) -> int:
    """The account's unreserved concurrency: its quota less reservations and the provisioned concurrency of
    functions without one (``skip``: leave out that (function, qualifier)'s config)."""
    free = account_concurrency()
    for function in backend._lambdas.latest():
        if function.reserved_concurrency is not None:
            free -= int(function.reserved_concurrency)
            continue
        free -= sum(c.requested for q, c in provisioned(function).items() if (function.function_name, q) != skip)
    return free


def configure(backend: LambdaBackend, function: LambdaFunction, qualifier: str | None, requested: int) -> Provisioned:
    """Put a provisioned concurrency config on the function's version or alias, or refuse it as AWS does (the
    messages as LocalStack's parity tests recorded them from AWS)."""
    if not qualifier or qualifier == "$LATEST":
        raise InvalidParameterValueException("Provisioned Concurrency Configs cannot be applied to unpublished "
                                             "function versions.")
    if requested < 1:
        raise ValidationException(requested, "provisionedConcurrentExecutions",
                                  "Member must have value greater than or equal to 1")
    backend.get_function(function.function_name, qualifier)  # ResourceNotFoundException when unknown
    aliases = backend._lambdas._get_function_aliases(function.function_name)
    alias = aliases.get(qualifier)
    if alias is not None and ((alias.routing_config or {}).get("AdditionalVersionWeights")):
        raise InvalidParameterValueException("Alias with weights can not be used with Provisioned Concurrency")
    # each version has one config, on itself or on one alias pointing to it
    if alias is not None and alias.function_version in provisioned(function):
        raise ResourceConflict("Alias can't be used for Provisioned Concurrency configuration on an already "
                               "Provisioned version")
    if alias is None and any(a.function_version == qualifier and a.name in provisioned(function)
                             for a in aliases.values()):
        raise ResourceConflict("Version is pointed by a Provisioned Concurrency alias")
    others = sum(c.requested for q, c in provisioned(function).items() if q != qualifier)
    if function.reserved_concurrency is not None:
        if others + requested > int(function.reserved_concurrency):
            raise InvalidParameterValueException("Requested Provisioned Concurrency should not be greater than the "
                                                 "reservedConcurrentExecution for function")
    elif requested > account_concurrency():
        raise InvalidParameterValueException(f"Specified ConcurrentExecutions for function is greater than "
                                             f"account's unreserved concurrency [{account_concurrency()}].")
    elif _unreserved(backend, (function.function_name, qualifier)) - requested < UNRESERVED_MINIMUM:
        raise InvalidParameterValueException(f"Specified ConcurrentExecutions for function decreases account's "
                                             f"UnreservedConcurrentExecution below its minimum value of "
                                             f"[{UNRESERVED_MINIMUM}].")
    config = provisioned(function)[qualifier] = Provisioned(requested)
    return config


def _put(self: LambdaResponse):
    function, qualifier = _target(self.backend, self.path, self.querystring.get("Qualifier", [None])[0])
    config = configure(self.backend, function, qualifier,
                       int(self.json_body.get("ProvisionedConcurrentExecutions") or 0))
    return 202, {"status": 202}, json.dumps(config.to_json())


def _get(self: LambdaResponse):
    function, qualifier = _target(self.backend, self.path, self.querystring.get("Qualifier", [None])[0])
    if qualifier not in provisioned(function):
        raise ConfigNotFound()
    return 200, {"status": 200}, json.dumps(provisioned(function)[qualifier].to_json())


def _delete(self: LambdaResponse):
    function, qualifier = _target(self.backend, self.path, self.querystring.get("Qualifier", [None])[0])
    if provisioned(function).pop(qualifier, None) is None:
        raise ConfigNotFound()
    return 204, {"status": 204}, ""


def _list(self: LambdaResponse):
    function, _ = _target(self.backend, self.path, None)
    found = [{"FunctionArn": f"{function.function_arn}:{q}", **c.to_json()}
             for q, c in sorted(provisioned(function).items())]
    return 200, {"status": 200}, json.dumps({"ProvisionedConcurrencyConfigs": found})


def _get_or_list(self: LambdaResponse):
    """Get and List share a path; ``List=ALL`` tells them apart."""
    return _list(self) if self.querystring.get("List") else _get(self)


def _account_settings(self: LambdaResponse):
    functions = list(self.backend._lambdas.latest())
    limit = {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
             "ConcurrentExecutions": account_concurrency(), "UnreservedConcurrentExecutions": _unreserved(self.backend)}
    usage = {"TotalCodeSize": sum(int(f.code_size or 0) for f in functions), "FunctionCount": len(functions)}
    return 200, {"status": 200}, json.dumps({"AccountLimit": limit, "AccountUsage": usage})


def _root_signed(headers: dict) -> bool:
    match = re.search(r"Credential=([^/]+)/\d{8}/([^/]+)/", headers.get("Authorization", ""))
    return bool(match) and match.group(1) == settings.ACCESS_KEY and not headers.get("X-Amz-Security-Token")


def _private(request, full_url: str, headers: dict):
    """The gateway's view of every config (GET), and its report of one config's allocation (POST)."""
    if not _root_signed(headers):
        return 403, {"x-amzn-ErrorType": "AccessDeniedException"}, json.dumps(
            {"Message": "the stack's internal routes take only its root key"})
    region = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", headers["Authorization"]).group(1)
    backend = lambda_backends[settings.ACCOUNT][region]
    if request.method == "GET":
        found = [{"FunctionName": f.function_name, "Qualifier": q, "Requested": c.requested,
                  "Allocated": c.allocated, "Failed": c.failed}
                 for f in backend._lambdas.latest() for q, c in provisioned(f).items()]
        return 200, {"Content-Type": "application/json"}, json.dumps({"Configs": found})
    report = json.loads(request.data or b"{}")
    function = backend._lambdas._functions.get(report.get("FunctionName"), {}).get("latest")
    config = provisioned(function).get(report.get("Qualifier")) if function else None
    if config is not None and config.requested == report.get("Requested"):  # not a report about an older request
        config.allocated = min(int(report.get("Allocated") or 0), config.requested)
        config.failed = bool(report.get("Failed"))
    return 204, {}, ""


LambdaResponse.put_provisioned_concurrency_config = _put
LambdaResponse.get_provisioned_concurrency_config = _get_or_list
LambdaResponse.delete_provisioned_concurrency_config = _delete
LambdaResponse.list_provisioned_concurrency_configs = _get_or_list
LambdaResponse.get_account_settings = _account_settings
urls.url_paths[r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"] = \
    LambdaResponse.dispatch
urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/?$"] = LambdaResponse.dispatch
urls.url_paths["{0}" + PRIVATE_PATH + "$"] = _private

"""What moto's Lambda lacks for asynchronous invocation; importing this module patches it in.

- ``DeadLetterConfig`` is kept at CreateFunction and UpdateFunctionConfiguration, reported in the configuration
  and locked into a version by PublishVersion, as on AWS (moto drops it);
- the event invoke configuration (Put/Get/Update/Delete/ListFunctionEventInvokeConfigs) is kept per qualifier
  (``$LATEST``, a version or an alias), ``Put`` replaces it and ``Update`` changes only the members it names, as
  AWS documents (moto keeps one per function and appends on every put). The gateway's asynchronous delivery
  (``services.gateway.lambda_async``) reads it.
"""

import json
import re
import time
from typing import Any
from urllib.parse import unquote

from moto.awslambda.exceptions import (
    InvalidParameterValueException,
    UnknownEventConfig,
    ValidationException,
)
from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.awslambda.responses import LambdaResponse

DESTINATION = re.compile(r"arn:aws[a-zA-Z-]*:(sqs|sns|lambda|events):[a-z0-9-]+:\d{12}:.+")
DLQ_TARGET = re.compile(r"arn:aws[a-zA-Z-]*:(sqs|sns):[a-z0-9-]+:\d{12}:.+")

_moto_init = LambdaFunction.__init__
_moto_update = LambdaFunction.update_configuration
_moto_configuration = LambdaFunction.get_configuration


def _dead_letter(config: dict | None) -> dict | None:
    target = (config or {}).get("TargetArn")
    if target and not DLQ_TARGET.fullmatch(target):
        raise InvalidParameterValueException(f"The provided target {target} is invalid: a dead-letter queue is an "
                                             "SQS queue or an SNS topic.")
    return {"TargetArn": target} if target else None


def _init(self: LambdaFunction, account_id: str, spec: dict[str, Any], region: str, version: str | int = 1) -> None:
    self.dead_letter_config = _dead_letter(spec.get("DeadLetterConfig"))
    _moto_init(self, account_id, spec, region, version)


def _update(self: LambdaFunction, config_updates: dict[str, Any]) -> dict[str, Any]:
    if "DeadLetterConfig" in config_updates:
        self.dead_letter_config = _dead_letter(config_updates["DeadLetterConfig"])
    return _moto_update(self, config_updates)


def _configuration(self: LambdaFunction, on_create: bool = False) -> dict[str, Any]:
    config = _moto_configuration(self, on_create)
    if getattr(self, "dead_letter_config", None):
        config["DeadLetterConfig"] = self.dead_letter_config
    return config


LambdaFunction.__init__ = _init
LambdaFunction.update_configuration = _update
LambdaFunction.get_configuration = _configuration

MEMBERS = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")


def _validate(config: dict[str, Any]) -> None:
    retries, age = config.get("MaximumRetryAttempts"), config.get("MaximumEventAgeInSeconds")
    if retries is not None and not 0 <= retries <= 2:
        raise ValidationException(retries, "maximumRetryAttempts", "Member must have value less than or equal to 2")
    if age is not None and not 60 <= age <= 21600:
        raise ValidationException(age, "maximumEventAgeInSeconds",
                                  "Member must have value less than or equal to 21600")
    for condition in ("OnSuccess", "OnFailure"):
        destination = ((config.get("DestinationConfig") or {}).get(condition) or {}).get("Destination")
        if destination and not DESTINATION.fullmatch(destination):
            raise InvalidParameterValueException(f"The destination ARN {destination} is invalid.")  # AWS's words


def _target(backend: LambdaBackend, path: str, qualifier: str | None) -> tuple[LambdaFunction, str]:
    """The function's ``$LATEST`` (where the configs live) and the qualifier, which must exist."""
    name = unquote(path.split("/functions/", 1)[1].split("/", 1)[0])
    if name.startswith("arn:"):
        _, name, named = backend._lambdas.split_function_arn(name)
    else:
        name, _, named = name.partition(":")
    qualifier = named or qualifier or "$LATEST"
    backend.get_function(name, qualifier)  # ResourceNotFoundException for an unknown function or qualifier
    return backend._lambdas.get_function_by_name_forbid_qualifier(name), qualifier


def configs(function: LambdaFunction) -> dict[str, dict[str, Any]]:
    """A function's event invoke configs by qualifier."""
    if not hasattr(function, "event_invoke_configs"):
        function.event_invoke_configs = {}
    return function.event_invoke_configs


def _answer(function: LambdaFunction, qualifier: str, config: dict[str, Any]) -> dict[str, Any]:
    destinations = config.get("DestinationConfig") or {}
    return {"LastModified": config["LastModified"], "FunctionArn": f"{function.function_arn}:{qualifier}",
            **{k: config[k] for k in MEMBERS[:2] if config.get(k) is not None},
            "DestinationConfig": {"OnSuccess": destinations.get("OnSuccess") or {},
                                  "OnFailure": destinations.get("OnFailure") or {}}}


def _request(self: LambdaResponse) -> tuple[LambdaFunction, str]:
    return _target(self.backend, self.path, self.querystring.get("Qualifier", [None])[0])


def _put(self: LambdaResponse, merge: bool = False):
    function, qualifier = _request(self)
    body = self.json_body
    old = configs(function).get(qualifier)
    if merge and old is None:
        raise UnknownEventConfig(f"{function.function_arn}:{qualifier}")
    new = {k: body[k] for k in MEMBERS if body.get(k) is not None}
    config = {**(old if merge else {}), **new, "LastModified": time.time()}
    _validate(config)
    configs(function)[qualifier] = config
    return 200, {"status": 200}, json.dumps(_answer(function, qualifier, config))


def _get(self: LambdaResponse):
    function, qualifier = _request(self)
    if qualifier not in configs(function):
        raise UnknownEventConfig(f"{function.function_arn}:{qualifier}")
    return 200, {"status": 200}, json.dumps(_answer(function, qualifier, configs(function)[qualifier]))


def _delete(self: LambdaResponse):
    function, qualifier = _request(self)
    if configs(function).pop(qualifier, None) is None:
        raise UnknownEventConfig(f"{function.function_arn}:{qualifier}")
    return 204, {"status": 204}, ""


def _list(self: LambdaResponse):
    function, _ = _target(self.backend, self.path, None)
    found = [_answer(function, q, c) for q, c in sorted(configs(function).items())]
    return 200, {"status": 200}, json.dumps({"FunctionEventInvokeConfigs": found})


LambdaResponse.put_function_event_invoke_config = _put
LambdaResponse.update_function_event_invoke_config = lambda self: _put(self, merge=True)
LambdaResponse.get_function_event_invoke_config = _get
LambdaResponse.delete_function_event_invoke_config = _delete
LambdaResponse.list_function_event_invoke_configs = _list

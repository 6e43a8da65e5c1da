"""What moto's CloudFormation lacks for dogops' promotion stack; importing this module patches it in.

- ``AWS::Lambda::Alias`` (accepted, nothing created): created, moved to a new version on
  update and deleted with the stack through moto's Lambda backend, so alias-qualified
  permissions and ``Invoke`` of ``function:alias`` find it;
- ``AWS::Lambda::Url`` (accepted, nothing created): the function URL config, for its qualifier, created,
  updated and deleted with the stack (``lambda_urls``); ``Ref`` is the (qualified) function ARN,
  ``Fn::GetAtt`` gives ``FunctionArn`` and ``FunctionUrl`` (on the local gateway);
- ``Fn::GetAtt Version.Version`` (an error 500);
- ``AWS::SageMaker::Endpoint``'s ``EndpointName`` (ignored: a generated name);
- ``AWS::IAM::Role``'s inline ``Policies`` kept as dicts, which moto's IAM enforcement cannot read (it
  evaluates JSON text, as ``PutRolePolicy`` stores): a role made by a stack would allow nothing;
- an update (its change set, and its execution) touched only resources whose template text or
  parameters changed: like AWS it now also updates those that refer to a modified resource (AWS's
  dynamic evaluation: an EndpointConfig when its Model is replaced, then the Endpoint), in template
  order, which must list referents first (moto's own order);
- an updated ``AWS::SageMaker::Endpoint`` was deleted and re-created: it is rolled in place.
"""

import json
import re
from typing import Any

from moto.awslambda.exceptions import GenericResourcNotFound, UnknownFunctionException
from moto.awslambda.models import LambdaVersion, lambda_backends
from moto.cloudformation.models import Change, ChangeSet
from moto.cloudformation.parsing import ResourceMap
from moto.core.common_models import CloudFormationModel
from moto.iam.models import Role
from moto.sagemaker.models import FakeEndpoint, sagemaker_backends

from .lambda_urls import create_url, delete_url, get_url
from .sagemaker_endpoints import roll_endpoint


class Alias(CloudFormationModel):
    """One alias of one function; its physical id (``Ref``) is the alias ARN, as on AWS."""

    def __init__(self, arn: str, function: str, name: str):
        self.arn, self.function, self.name = arn, function, name

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Alias"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "AliasArn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "Alias":
        props = cloudformation_json["Properties"]
        alias = lambda_backends[account_id][region_name].create_alias(
            props["Name"], props["FunctionName"], str(props["FunctionVersion"]), props.get("Description", ""), None)
        return cls(alias.arn, props["FunctionName"], props["Name"])

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "Alias", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str, region_name: str
                                        ) -> "Alias":
        props = cloudformation_json["Properties"]
        backend = lambda_backends[account_id][region_name]
        backend.update_alias(original_resource.name, original_resource.function, str(props["FunctionVersion"]),
                             props.get("Description", ""), None)
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        function, name = resource_name.split(":")[-2:]  # the alias ARN
        try:
            lambda_backends[account_id][region_name].delete_alias(name, function)
        except UnknownFunctionException:  # the function went first: its aliases went with it
            pass


class FunctionUrl(CloudFormationModel):
    """A function URL config; its physical id is the function's ARN, with the qualifier when it has one."""

    def __init__(self, function_arn: str, url: str, properties: dict[str, Any]):
        self.function_arn, self.url, self.properties = function_arn, url, properties

    @property
    def physical_resource_id(self) -> str:
        return self.function_arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Url"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("FunctionArn", "FunctionUrl")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.url if attribute_name == "FunctionUrl" else self.function_arn

    @staticmethod
    def _config(props: dict[str, Any]) -> dict[str, Any]:
        return {key: props[key] for key in ("AuthType", "Cors", "InvokeMode") if key in props}

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "FunctionUrl":
        props = cloudformation_json["Properties"]
        config = create_url(lambda_backends[account_id][region_name], props["TargetFunctionArn"],
                            props.get("Qualifier"), cls._config(props))
        return cls(config.to_dict()["FunctionArn"], config.url, props)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "FunctionUrl", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str, region_name: str
                                        ) -> "FunctionUrl":
        props, old = cloudformation_json["Properties"], original_resource.properties
        if (props["TargetFunctionArn"], props.get("Qualifier")) != (old["TargetFunctionArn"], old.get("Qualifier")):
            original_resource.delete(account_id, region_name)  # a new target: a new URL, as on AWS
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id,
                                                       region_name)
        url = get_url(lambda_backends[account_id][region_name], props["TargetFunctionArn"], props.get("Qualifier"))
        url.update(cls._config(props))
        original_resource.properties = props
        return original_resource

    def delete(self, account_id: str, region_name: str) -> None:
        try:
            delete_url(lambda_backends[account_id][region_name], self.function_arn, None)
        except (UnknownFunctionException, GenericResourcNotFound):  # gone with its function
            pass


_put_policy = Role.put_policy


def _put_policy_text(self: Role, policy_name: str, policy_json) -> None:
    _put_policy(self, policy_name, policy_json if isinstance(policy_json, str) else json.dumps(policy_json))


Role.put_policy = _put_policy_text
LambdaVersion.has_cfn_attr = classmethod(lambda cls, attr: attr == "Version")
LambdaVersion.get_cfn_attribute = lambda self, attribute_name: self.version
FakeEndpoint.cloudformation_name_type = staticmethod(lambda: "EndpointName")


def _refers_to(resource: dict, names: set[str]) -> bool:
    """Whether a resource's JSON names any of ``names`` in a Ref, a GetAtt or a Sub."""
    text = json.dumps(resource)
    return any(re.search(rf'"Ref": "{name}"|"Fn::GetAtt": \["{name}"|\$\{{{name}[.}}]', text) for name in names)


_build_resource_diff = ResourceMap.build_resource_diff


def _resource_diff(self: ResourceMap, other_template: dict, parameters: dict | None = None) -> dict:
    """moto's Add/Modify/Remove, with every resource that refers to a modified one also modified (transitively):
    a replaced Model gets a new name, so its EndpointConfig must be made anew and the Endpoint rolled to it."""
    actions = _build_resource_diff(self, other_template, parameters)
    new = other_template["Resources"]
    modified = set(actions["Modify"])
    while more := {name for name in new if name not in modified and name not in actions["Add"]
                   and _refers_to(new[name], modified)}:
        modified |= more
    actions["Modify"] = [name for name in new if name in modified]  # template order: referents first
    return actions


def _diff(self: ChangeSet) -> list[Change]:
    resource_map = self.stack.resource_map
    actions = resource_map.build_resource_diff(self.template_dict, self.parameters)
    new, old = self.template_dict["Resources"], resource_map._resource_json_map
    return ([Change("Add", name, new[name]["Type"]) for name in actions["Add"]]
            + [Change("Modify", name, new[name]["Type"]) for name in actions["Modify"]]
            + [Change("Remove", name, old[name]["Type"]) for name in actions["Remove"]])


def _roll_endpoint(cls, original_resource: FakeEndpoint, new_resource_name: str, cloudformation_json: dict,
                   account_id: str, region_name: str) -> FakeEndpoint:
    """A stack update rolls the endpoint (moto deleted and re-created it, so it vanished for a moment)."""
    props = cloudformation_json["Properties"]
    return roll_endpoint(sagemaker_backends[account_id][region_name], original_resource,
                         props["EndpointConfigName"], props.get("Tags", []))


ResourceMap.build_resource_diff = _resource_diff
FakeEndpoint.update_from_cloudformation_json = classmethod(_roll_endpoint)
ChangeSet.diff = _diff

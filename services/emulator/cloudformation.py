"""What moto's CloudFormation lacks for dogops' stacks (a stage's, its training stack); importing this module patches
it in.

- ``AWS::Lambda::Alias`` (accepted, nothing created): created, moved to a new version on
  update and deleted with the stack through moto's Lambda backend, so alias-qualified
  permissions and ``Invoke`` of ``function:alias`` find it; its ``ProvisionedConcurrencyConfig`` is the alias's
  provisioned concurrency config (``lambda_versions``);
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
- an updated ``AWS::SageMaker::Endpoint`` was deleted and re-created: it is rolled in place;
- an updated ``AWS::IAM::Role`` took its new description alone: it takes the template's trust policy, tags and
  inline ``Policies`` too (those the template drops are deleted; those other resources put are left);
- ``AWS::EC2::SecurityGroup`` ignored ``SecurityGroupEgress`` (AWS's default allow-all egress stayed) and
  ``CidrIpv6``, and an update deleted and re-created the group (a new id): its rules are the template's, set in
  place unless its name, description or VPC changes (a replacement, as on AWS);
- ``Condition`` on a resource was applied at creation only: a change set now adds (removes) a resource whose
  condition turns true (false) and modifies one whose ``Fn::If`` reads a condition that changed, and the update
  does so;
- a change set's execution left the stack's parameters and outputs as they were (a stack created from a change
  set had no outputs): they are the executed template's.
"""

import functools
import json
import re
from typing import Any

from moto.awslambda.exceptions import GenericResourcNotFound, UnknownFunctionException
from moto.awslambda.models import LambdaVersion, lambda_backends
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend
from moto.cloudformation.parsing import LazyDict, ResourceMap, parse_condition
from moto.core.common_models import CloudFormationModel
from moto.ec2.models import ec2_backends
from moto.ec2.models.security_groups import SecurityGroup
from moto.iam.models import Role, iam_backends
from moto.sagemaker.models import FakeEndpoint, sagemaker_backends
from moto.utilities.utils import get_partition

from .lambda_urls import create_url, delete_url, get_url
from .lambda_versions import configure, provisioned
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
        _provision(account_id, region_name, props)
        return cls(alias.arn, props["FunctionName"], props["Name"])

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "Alias", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str, region_name: str
                                        ) -> "Alias":
        props = cloudformation_json["Properties"]
        backend = lambda_backends[account_id][region_name]
        backend.update_alias(original_resource.name, original_resource.function, str(props["FunctionVersion"]),
                             props.get("Description", ""), None)
        _provision(account_id, region_name, props)
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        function, name = resource_name.split(":")[-2:]  # the alias ARN
        try:
            lambda_backends[account_id][region_name].delete_alias(name, function)  # its provisioned config too
        except UnknownFunctionException:  # the function went first: its aliases went with it
            pass


def _provision(account_id: str, region_name: str, props: dict[str, Any]) -> None:
    """The alias's ``ProvisionedConcurrencyConfig`` as its provisioned concurrency config (``lambda_versions``);
    none in the template: none kept."""
    backend = lambda_backends[account_id][region_name]
    function = backend.get_function(props["FunctionName"])
    count = int((props.get("ProvisionedConcurrencyConfig") or {}).get("ProvisionedConcurrentExecutions") or 0)
    configs = provisioned(function)
    if not count:
        configs.pop(props["Name"], None)
    elif getattr(configs.get(props["Name"]), "requested", None) != count:
        configure(backend, function, props["Name"], count)  # refused as the API refuses it


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


def _reads(resource: dict, conditions: set[str]) -> bool:
    """Whether a resource's properties choose with ``Fn::If`` (or a nested ``Condition``) on any of ``conditions``."""
    text = json.dumps(resource.get("Properties", {}))
    return any(re.search(rf'"Fn::If": \["{name}"|"Condition": "{name}"', text) for name in conditions)


def _conditions(template: dict, values: dict) -> LazyDict:
    """The template's conditions evaluated with ``values`` (its parameters and the pseudo parameters)."""
    conditions = LazyDict()
    for name, condition in template.get("Conditions", {}).items():
        conditions[name] = functools.partial(parse_condition, condition, values, conditions)
    return conditions


def _holds(resource: dict, conditions: LazyDict) -> bool:
    return "Condition" not in resource or bool(conditions[resource["Condition"]])


_build_resource_diff = ResourceMap.build_resource_diff


def _resource_diff(self: ResourceMap, other_template: dict, parameters: dict | None = None) -> dict:
    """moto's Add/Modify/Remove with the resources' conditions (a resource exists while its condition holds), a
    parameter counted as used in a ``Fn::Sub`` too (moto saw only ``Ref``), and every resource that refers to a
    modified one, or reads a condition that changed, also modified (transitively): a replaced Model gets a new
    name, so its EndpointConfig must be made anew and the Endpoint rolled to it."""
    actions = _build_resource_diff(self, other_template, parameters)
    new, old = other_template["Resources"], self._resource_json_map
    given = self.input_parameters if parameters is None else parameters
    values = {**{k: v for k, v in self._parsed_resources.items() if k.startswith("AWS::")},
              **{k: p.get("Default") for k, p in other_template.get("Parameters", {}).items()}, **given}
    now, then = _conditions(other_template, values), getattr(self, "lazy_condition_map", LazyDict())
    existing = {name for name in old if name in self._parsed_resources}
    wanted = {name for name in new if _holds(new[name], now)}
    changed = {name for name in now if name not in then or bool(now[name]) != bool(then[name])}
    moved = {name for name, value in given.items() if self.input_parameters.get(name) != value}
    modified = {name for name in existing & wanted if name in actions["Modify"] or _reads(new[name], changed)
                or _refers_to(new[name], moved)}
    while more := {name for name in existing & wanted if name not in modified and _refers_to(new[name], modified)}:
        modified |= more
    return {"Add": [name for name in new if name in wanted - existing],
            "Modify": [name for name in new if name in modified],  # template order: referents first
            "Remove": [name for name in old if name in existing - wanted]}


_update = ResourceMap.update


def _update_with_conditions(self: ResourceMap, template: dict, parameters: dict | None = None) -> None:
    """moto's update; a resource whose condition no longer holds (deleted by it) is forgotten, so that a later
    diff or the stack's deletion does not take it for one that exists."""
    _update(self, template, parameters)
    for name, resource in template["Resources"].items():
        if not _holds(resource, self.lazy_condition_map):
            self._parsed_resources.pop(name, None)


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


_execute_change_set = CloudFormationBackend.execute_change_set


def _execute_change_set_and_outputs(self: CloudFormationBackend, change_set_name: str,
                                    stack_name: str | None = None) -> None:
    """moto's execution; then the stack's parameters, template and outputs are the change set's."""
    _execute_change_set(self, change_set_name, stack_name)
    change_set = self.change_sets.get(change_set_name) or next(
        c for c in self.change_sets.values() if c.change_set_name == change_set_name)
    stack = self.stacks[change_set.stack_id]
    stack.parameters = change_set.parameters
    stack._parse_template()
    stack.description = stack.template_dict.get("Description")
    stack.output_map = stack._create_output_map()


_create_role = Role.create_from_cloudformation_json.__func__


def _create_role_remembering_policies(cls, resource_name: str, cloudformation_json: dict, account_id: str,
                                      region_name: str, **kwargs: Any) -> Role:
    role = _create_role(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    role.template_policies = {p["PolicyName"] for p in cloudformation_json["Properties"].get("Policies", [])}
    return role


def _update_role(cls, original_resource: Role, new_resource_name: str, cloudformation_json: dict, account_id: str,
                 region_name: str) -> Role:
    """The role as the template now has it: a new name is a new role (a replacement, as on AWS); otherwise its
    trust policy, description, tags and the template's inline policies change in place."""
    props = cloudformation_json["Properties"]
    if props.get("RoleName", original_resource.name) != original_resource.name:
        role = cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
        cls.delete_from_cloudformation_json(original_resource.name, cloudformation_json, account_id, region_name)
        return role
    backend, name = iam_backends[account_id][get_partition(region_name)], original_resource.name
    trust = props["AssumeRolePolicyDocument"]
    backend.update_assume_role_policy(name, trust if isinstance(trust, str) else json.dumps(trust))
    backend.update_role(name, props.get("Description", ""), props.get("MaxSessionDuration", 3600))
    tags = props.get("Tags", [])
    backend.untag_role(name, [t["Key"] for t in original_resource.tags if t["Key"] not in {t["Key"] for t in tags}])
    if tags:
        backend.tag_role(name, tags)
    policies = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", [])}
    for dropped in getattr(original_resource, "template_policies", set()) - set(policies):
        backend.delete_role_policy(name, dropped)
    for policy_name, document in policies.items():
        backend.put_role_policy(name, policy_name, document if isinstance(document, str) else json.dumps(document))
    original_resource.template_policies = set(policies)
    return original_resource


def _set_rules(group: SecurityGroup, props: dict, account_id: str, region_name: str) -> None:
    """The group's ingress and egress rules as ``props`` list them (no egress listed: AWS's allow-all)."""
    backend = ec2_backends[account_id][region_name]
    group.ingress_rules, group.egress_rules = [], []
    egress = props.get("SecurityGroupEgress") or [{"IpProtocol": "-1", "CidrIp": "0.0.0.0/0"}]
    for rules, authorize in ((props.get("SecurityGroupIngress", []), backend.authorize_security_group_ingress),
                             (egress, backend.authorize_security_group_egress)):
        for rule in rules:
            cidr = {key: rule[key] for key in ("CidrIp", "CidrIpv6", "Description") if key in rule}
            authorize(group_name_or_id=group.id, ip_protocol=str(rule["IpProtocol"]), from_port=rule.get("FromPort"),
                      to_port=rule.get("ToPort"), ip_ranges=[cidr] if cidr else [], vpc_id=group.vpc_id)


def _create_group(cls, resource_name: str, cloudformation_json: dict, account_id: str, region_name: str,
                  **kwargs: Any) -> SecurityGroup:
    props = cloudformation_json["Properties"]
    group = ec2_backends[account_id][region_name].create_security_group(
        name=resource_name, description=props.get("GroupDescription"), vpc_id=props.get("VpcId"),
        tags={t["Key"]: t["Value"] for t in props.get("Tags", [])})
    _set_rules(group, props, account_id, region_name)
    return group


def _update_group(cls, original_resource: SecurityGroup, new_resource_name: str, cloudformation_json: dict,
                  account_id: str, region_name: str) -> SecurityGroup:
    """In place, as on AWS, unless the name, description or VPC changes (then a new group replaces it)."""
    props = cloudformation_json["Properties"]
    if (props.get("GroupName", original_resource.name), props.get("GroupDescription"), props.get("VpcId")) != (
            original_resource.name, original_resource.description, original_resource.vpc_id):
        original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
    _set_rules(original_resource, props, account_id, region_name)
    original_resource.add_tags({t["Key"]: t["Value"] for t in props.get("Tags", [])})
    return original_resource


ResourceMap.build_resource_diff = _resource_diff
ResourceMap.update = _update_with_conditions
CloudFormationBackend.execute_change_set = _execute_change_set_and_outputs
FakeEndpoint.update_from_cloudformation_json = classmethod(_roll_endpoint)
Role.create_from_cloudformation_json = classmethod(_create_role_remembering_policies)
Role.update_from_cloudformation_json = classmethod(_update_role)
SecurityGroup.create_from_cloudformation_json = classmethod(_create_group)
SecurityGroup.update_from_cloudformation_json = classmethod(_update_group)
ChangeSet.diff = _diff

"""``AWS::ApplicationAutoScaling::ScalableTarget`` and ``ScalingPolicy`` in CloudFormation stacks (moto skipped
them with a warning), so that the target and target-tracking policy a stage's stack declares (promotion's template)
are registered in moto's Application Auto Scaling, where ``autoscaling`` acts on them; updated and deleted with
the stack. ``Ref`` is AWS's: a target's ``<resource id>|<dimension>|<namespace>``, a policy's ARN. Numbers a
template passes as parameters (strings) are stored as the API's numbers."""

from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.core.common_models import CloudFormationModel

NUMBERS = {"TargetValue": float, "ScaleInCooldown": int, "ScaleOutCooldown": int}


class ScalableTarget(CloudFormationModel):
    def __init__(self, namespace: str, resource_id: str, dimension: str):
        self.namespace, self.resource_id, self.dimension = namespace, resource_id, dimension

    @property
    def physical_resource_id(self) -> str:
        return f"{self.resource_id}|{self.dimension}|{self.namespace}"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalableTarget"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "ScalableTarget":
        props = cloudformation_json["Properties"]
        applicationautoscaling_backends[account_id][region_name].register_scalable_target(
            props["ServiceNamespace"], props["ResourceId"], props["ScalableDimension"], int(props["MinCapacity"]),
            int(props["MaxCapacity"]), props.get("RoleARN", ""), props.get("SuspendedState"))
        return cls(props["ServiceNamespace"], props["ResourceId"], props["ScalableDimension"])

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "ScalableTarget", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str, region_name: str
                                        ) -> "ScalableTarget":
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        resource_id, dimension, namespace = resource_name.split("|")
        backend = applicationautoscaling_backends[account_id][region_name]
        if backend.describe_scalable_targets(namespace, [resource_id], dimension):
            backend.deregister_scalable_target(namespace, resource_id, dimension)


def _placement(props: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace, resource id, dimension): from ``ScalingTargetId`` (a target's Ref) or named."""
    if props.get("ScalingTargetId"):
        resource_id, dimension, namespace = props["ScalingTargetId"].split("|")
        return namespace, resource_id, dimension
    return props["ServiceNamespace"], props["ResourceId"], props["ScalableDimension"]


class ScalingPolicy(CloudFormationModel):
    def __init__(self, arn: str):
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalingPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "PolicyName"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "ScalingPolicy":
        props = cloudformation_json["Properties"]
        kind = props["PolicyType"]
        body = dict(props.get("TargetTrackingScalingPolicyConfiguration" if kind == "TargetTrackingScaling"
                              else "StepScalingPolicyConfiguration") or {})
        body.update({key: convert(body[key]) for key, convert in NUMBERS.items() if key in body})
        policy = applicationautoscaling_backends[account_id][region_name].put_scaling_policy(
            props["PolicyName"], *_placement(props), body, kind)
        return cls(policy.policy_arn)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "ScalingPolicy", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str, region_name: str
                                        ) -> "ScalingPolicy":
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        policies = applicationautoscaling_backends[account_id][region_name].policies
        for key in [key for key, policy in policies.items() if policy.policy_arn == resource_name]:
            policies.pop(key).delete_alarms(account_id, region_name)  # its target-tracking alarms go with it

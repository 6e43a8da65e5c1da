"""SageMaker's describes shaped as AWS answers them (imported by ``services.emulator.server``), whichever module
implements the action: ``DescribeTrainingJob``, ``DescribeHyperParameterTuningJob``, ``DescribeModel``,
``DescribeEndpointConfig`` and ``DescribeEndpoint``. The SDKs read these answers: ``Estimator.attach`` needs
``OutputDataConfig.KmsKeyId``, ``HyperparameterTuner.attach`` ``TrainingJobEarlyStoppingType``, and SDK v3 stops on
the empty ``VpcConfig`` moto adds to a model.

- Configuration is answered as it was sent: each member of the create request that the describe returns is the
  request's (moto drops ``ProfilerConfig``, ``ProfilerRuleConfigurations``, ``RetryStrategy``, a model's
  ``EnableNetworkIsolation``...), and one the request left out is absent (moto adds an empty ``VpcConfig`` and
  ``Containers`` to a model, an empty ``DataCaptureConfig`` to an endpoint config, ``arn:test`` as a model's role).
  State (status, times, metrics, artifacts) is the emulator's.
- No member is an empty object, an empty list or null unless the request sent it so or botocore's shape requires it.
- AWS's defaults fill what the request left out, as AWS answers them: ``OutputDataConfig`` ``KmsKeyId: ""`` and
  ``CompressionType: GZIP``, each channel's ``CompressionType``/``RecordWrapperType`` ``None`` and
  ``S3DataDistributionType`` ``FullyReplicated``, ``EnableSageMakerMetricsTimeSeries`` and the ``Enable*`` flags
  false, ``DebugHookConfig.CollectionConfigurations: []``, ``ProfilerConfig.DisableProfiler: false`` with
  ``ProfilingStatus``; a tuning job's ``TrainingJobEarlyStoppingType: Off``, its three kinds of
  ``ParameterRanges`` (empty lists where none are asked for) and the ``_tuning_objective_metric`` AWS adds to each
  definition's ``StaticHyperParameters`` (``HyperparameterTuner.attach`` removes it); a model's containers ``Mode:
  SingleModel``, ``Environment: {}`` and the ``ModelDataSource`` of their ``ModelDataUrl``; a variant's
  ``InitialVariantWeight: 1.0``, and an endpoint's variants their ``CurrentWeight``/``DesiredWeight`` and
  ``DeployedImages``.
"""

import copy
import weakref

from moto.core.responses import ActionResult
from moto.core.utils import get_service_model
from moto.sagemaker.responses import SageMakerResponse

# create action -> (its describe, the member naming the resource, the backend's table of them)
CREATES = {"CreateTrainingJob": ("DescribeTrainingJob", "TrainingJobName", "training_jobs"),
           "CreateHyperParameterTuningJob": ("DescribeHyperParameterTuningJob", "HyperParameterTuningJobName",
                                             "hyper_parameter_tuning_jobs"),
           "CreateModel": ("DescribeModel", "ModelName", "_models"),
           "CreateEndpointConfig": ("DescribeEndpointConfig", "EndpointConfigName", "endpoint_configs")}
DESCRIBES = {describe: (create, member, table) for create, (describe, member, table) in CREATES.items()}
_sent: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()  # moto's resource -> its request


def _defaults(node: dict, defaults: dict) -> None:
    for key, value in defaults.items():
        node.setdefault(key, value)


def _training_job(answer: dict, _self) -> None:
    _defaults(answer, {"EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": False,
                       "EnableManagedSpotTraining": False})
    _defaults(answer.get("AlgorithmSpecification", {}), {"EnableSageMakerMetricsTimeSeries": False})
    _defaults(answer.get("OutputDataConfig", {}), {"KmsKeyId": "", "CompressionType": "GZIP"})
    for channel in answer.get("InputDataConfig", []):
        _defaults(channel, {"CompressionType": "None", "RecordWrapperType": "None"})
        _defaults(channel.get("DataSource", {}).get("S3DataSource", {}), {"S3DataDistributionType": "FullyReplicated"})
    if "DebugHookConfig" in answer:
        _defaults(answer["DebugHookConfig"], {"CollectionConfigurations": []})
    if "ProfilerConfig" in answer:
        _defaults(answer["ProfilerConfig"], {"DisableProfiler": False})
        answer.setdefault("ProfilingStatus", "Disabled" if answer["ProfilerConfig"]["DisableProfiler"] else "Enabled")


def _tuning_job(answer: dict, _self) -> None:
    config = answer["HyperParameterTuningJobConfig"]
    _defaults(config, {"TrainingJobEarlyStoppingType": "Off"})
    definitions = [answer["TrainingJobDefinition"]] if "TrainingJobDefinition" in answer else answer.get(
        "TrainingJobDefinitions", [])
    for definition in definitions:
        objective = definition.get("TuningObjective") or config.get("HyperParameterTuningJobObjective") or {}
        if "MetricName" in objective:
            definition["StaticHyperParameters"] = {**definition.get("StaticHyperParameters", {}),
                                                   "_tuning_objective_metric": objective["MetricName"]}
    if "ParameterRanges" in config:
        _defaults(config["ParameterRanges"], {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                                              "CategoricalParameterRanges": []})


def _model(answer: dict, _self) -> None:
    answer.setdefault("EnableNetworkIsolation", False)
    for container in [answer["PrimaryContainer"]] if "PrimaryContainer" in answer else answer.get("Containers", []):
        _defaults(container, {"Mode": "SingleModel", "Environment": {}})
        if "ModelDataUrl" in container:
            container.setdefault("ModelDataSource", {"S3DataSource": {
                "S3Uri": container["ModelDataUrl"], "S3DataType": "S3Object", "CompressionType": "Gzip"}})


def _endpoint_config(answer: dict, _self) -> None:
    for variant in answer["ProductionVariants"]:
        variant.setdefault("InitialVariantWeight", 1.0)


def _endpoint(answer: dict, self) -> None:
    """Each variant's weights and images, from the endpoint's config and models (when they still exist)."""
    backend = self.sagemaker_backend
    config = backend.endpoint_configs.get(answer["EndpointConfigName"])
    variants = {v["VariantName"]: v for v in (config.production_variants if config else [])}
    for variant in answer.get("ProductionVariants", []):
        configured = variants.get(variant["VariantName"], {})
        weight = float(configured.get("InitialVariantWeight", 1.0))
        _defaults(variant, {"CurrentWeight": weight, "DesiredWeight": weight})
        model = backend._models.get(configured.get("ModelName"))
        if model is not None and "DeployedImages" not in variant:
            containers = [model.primary_container] if model.primary_container else model.containers
            variant["DeployedImages"] = [
                {"SpecifiedImage": c["Image"], **({"ResolvedImage": c["Image"]} if "@sha256:" in c["Image"] else {}),
                 "ResolutionTime": answer["LastModifiedTime"]} for c in containers if c.get("Image")]


SHAPES = {"DescribeTrainingJob": _training_job, "DescribeHyperParameterTuningJob": _tuning_job,
          "DescribeModel": _model, "DescribeEndpointConfig": _endpoint_config, "DescribeEndpoint": _endpoint}


def shape(self, action: str, answer: dict) -> dict:
    """moto's (or the emulator's) answer to describe ``action``, as AWS gives it."""
    model = get_service_model("sagemaker")
    output = model.operation_model(action).output_shape
    request = None
    if action in DESCRIBES:
        create, member, table = DESCRIBES[action]
        resource = getattr(self.sagemaker_backend, table).get(answer.get(member))
        request = _sent.get(resource) if resource is not None else None
    if request is not None:
        for member in model.operation_model(create).input_shape.members:
            if member in output.members:
                if member in request:
                    answer[member] = copy.deepcopy(request[member])
                else:
                    answer.pop(member, None)
    for member, value in list(answer.items()):
        if value in (None, {}, []) and member not in output.required_members and member not in (request or {}):
            del answer[member]
    SHAPES[action](answer, self)
    return answer


def _serialized(self, action_result: ActionResult):
    """moto's serialization of every SageMaker answer: a create's request is kept, a describe is shaped."""
    action, result = self._get_action(), action_result.result
    if action in CREATES and not isinstance(result, Exception):
        _, member, table = CREATES[action]
        resource = getattr(self.sagemaker_backend, table).get(self._get_param(member))
        if resource is not None:
            _sent[resource] = copy.deepcopy(self.params)
    elif action in SHAPES and isinstance(result, dict):
        action_result = ActionResult(shape(self, action, copy.deepcopy(result)))
    return _moto_serialized(self, action_result)


_moto_serialized = SageMakerResponse.serialized
SageMakerResponse.serialized = _serialized

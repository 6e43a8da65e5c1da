"""A ``CreateHyperParameterTuningJob`` request as the local tuner runs it: its training job definitions, each with
the tuner's spec (``dogops.tuning.spec``) and the ``ResourceConfig`` of its trials.

The request takes either form the API has, as the SageMaker SDKs send them:

- ``TrainingJobDefinition``, one algorithm, searched by the job config's ``HyperParameterTuningJobObjective`` and
  ``ParameterRanges``;
- ``TrainingJobDefinitions`` (the SDK's ``HyperparameterTuner.create``), 1 to 10 named algorithms, each with its
  own ``TuningObjective`` and ``HyperParameterRanges`` (the job config's when a definition has none). Locally the
  ``MaxNumberOfTrainingJobs`` are shared out evenly, in the definitions' order, and the definitions are searched
  one after another; the objectives must agree on ``Type`` so trials of all of them can be ranked.

Each definition's trials get ``ResourceConfig`` as sent, or from ``HyperParameterTuningResourceConfig``: its
instance type, count and volume, or the first of its ``InstanceConfigs`` (AWS picks among them by capacity; a
local machine never runs short). ``StaticHyperParameters`` pass to every trial as sent, the SDK's ``sagemaker_*``
keys (JSON-quoted) included. Only a definition that runs dogops' own ``train`` (no ``sagemaker_program``, no
``ContainerEntrypoint``) is held to ``train``'s hyperparameter names, and only when the job runs.

A ``WarmStartConfig`` names 1 to 5 parent jobs whose completed trials seed the search (either type: locally
both reuse what the parents learned). ``TuningJobCompletionCriteria`` end the search early (:class:`Completion`): ``TargetObjectiveMetricValue`` once a
trial reaches it, ``BestObjectiveNotImproving`` after that many trials in a row improve the best objective by less
than 1%, as AWS counts them; ``ConvergenceDetected`` (AWS's own judgement) is not emulated.

Every problem is a :class:`RequestError` whose message the emulator answers as a ``ValidationException``.
"""

import dataclasses

from dogops.tuning.spec import KNOWN_KEYS, SpecError, TuningSpec, parse_spec

VOLUME_GB = 30  # the SDK's default volume size, for a HyperParameterTuningResourceConfig that names none
IMPROVEMENT = 0.01  # what BestObjectiveNotImproving counts as an improvement (AWS: 1% or more)
WARM_START_TYPES = ("IdenticalDataAndAlgorithm", "TransferLearning")


class RequestError(ValueError):
    """The request is not one SageMaker (or the local tuner) takes."""


@dataclasses.dataclass(frozen=True)
class Definition:
    """One training job definition of a tuning job."""

    name: str | None  # DefinitionName (TrainingJobDefinitions), None for a TrainingJobDefinition
    body: dict  # the definition as sent
    spec: TuningSpec
    resources: dict  # its trials' ResourceConfig


@dataclasses.dataclass
class Completion:
    """``TuningJobCompletionCriteria``, followed trial by trial (in the order trials end)."""

    minimize: bool
    target: float | None = None  # TargetObjectiveMetricValue
    patience: int | None = None  # BestObjectiveNotImproving.MaxNumberOfTrainingJobsNotImproving
    best: float | None = None
    not_improving: int = 0  # trials in a row that did not improve the best by IMPROVEMENT
    reached: bool = False

    def record(self, value: float) -> None:
        """A trial ended with objective ``value``."""
        gain = None if self.best is None else (self.best - value if self.minimize else value - self.best)
        self.not_improving = 0 if gain is None or (gain > 0 and gain >= IMPROVEMENT * abs(self.best)) else (
            self.not_improving + 1)
        if gain is None or gain > 0:
            self.best = value
        target_met = self.target is not None and (value <= self.target if self.minimize else value >= self.target)
        self.reached = self.reached or target_met or (self.patience is not None and self.not_improving >= self.patience)


def completion(request: dict, minimize: bool) -> Completion:
    """The request's ``TuningJobCompletionCriteria`` (none: a criterion that is never reached)."""
    criteria = request["HyperParameterTuningJobConfig"].get("TuningJobCompletionCriteria") or {}
    if not isinstance(criteria, dict):
        raise RequestError("HyperParameterTuningJobConfig.TuningJobCompletionCriteria must be a structure.")
    if (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence") == "Enabled":
        raise RequestError("TuningJobCompletionCriteria.ConvergenceDetected (CompleteOnConvergence Enabled) is not "
                           "emulated by the local tuner; leave it out or set it Disabled to run the job locally.")
    patience = (criteria.get("BestObjectiveNotImproving") or {}).get("MaxNumberOfTrainingJobsNotImproving")
    if patience is not None and int(patience) < 3:
        raise RequestError("TuningJobCompletionCriteria.BestObjectiveNotImproving.MaxNumberOfTrainingJobsNotImproving"
                           " must be at least 3.")
    target = criteria.get("TargetObjectiveMetricValue")
    return Completion(minimize, None if target is None else float(target), None if patience is None else int(patience))


def runs_user_code(body: dict) -> bool:
    """Whether the definition's trials run the user's code rather than dogops' own ``train``."""
    return bool("sagemaker_program" in (body.get("StaticHyperParameters") or {})
                or body.get("AlgorithmSpecification", {}).get("ContainerEntrypoint"))


def resource_config(body: dict, where: str) -> dict:
    """The ``ResourceConfig`` of the definition's trials."""
    if ("ResourceConfig" in body) == ("HyperParameterTuningResourceConfig" in body):
        raise RequestError(f"{where}: exactly one of ResourceConfig and HyperParameterTuningResourceConfig must be "
                           "specified.")
    if "ResourceConfig" in body:
        return dict(body["ResourceConfig"])
    config = body["HyperParameterTuningResourceConfig"]
    instances = config.get("InstanceConfigs")
    if instances is not None:
        if not 1 <= len(instances) <= 6:
            raise RequestError(f"{where}.HyperParameterTuningResourceConfig.InstanceConfigs must hold 1 to 6 "
                               "instance configurations.")
        if any(config.get(key) is not None for key in ("InstanceType", "InstanceCount", "VolumeSizeInGB")):
            raise RequestError(f"{where}.HyperParameterTuningResourceConfig: InstanceConfigs cannot be specified "
                               "together with InstanceType, InstanceCount or VolumeSizeInGB.")
        for index, instance in enumerate(instances):
            missing = [k for k in ("InstanceType", "InstanceCount", "VolumeSizeInGB") if instance.get(k) is None]
            if missing:
                raise RequestError(f"{where}.HyperParameterTuningResourceConfig.InstanceConfigs[{index}] must specify "
                                   f"{', '.join(missing)}.")
        chosen = instances[0]
    elif config.get("InstanceType") and config.get("InstanceCount"):
        chosen = config
    else:
        raise RequestError(f"{where}.HyperParameterTuningResourceConfig must specify either InstanceConfigs or "
                           "InstanceType and InstanceCount.")
    if int(chosen.get("InstanceCount", 0)) < 1:
        raise RequestError(f"{where}.HyperParameterTuningResourceConfig: InstanceCount must be at least 1.")
    resources = {"InstanceType": chosen["InstanceType"], "InstanceCount": int(chosen["InstanceCount"]),
                 "VolumeSizeInGB": int(chosen.get("VolumeSizeInGB") or VOLUME_GB)}
    if config.get("VolumeKmsKeyId"):
        resources["VolumeKmsKeyId"] = config["VolumeKmsKeyId"]
    return resources


def _spec(config: dict, body: dict, max_jobs: int | None, where: str, check_names: bool) -> TuningSpec:
    raw = {k: v for k, v in config.items() if k in KNOWN_KEYS}
    if "TuningObjective" in body:
        raw["HyperParameterTuningJobObjective"] = body["TuningObjective"]
    if "HyperParameterRanges" in body:
        raw["ParameterRanges"] = body["HyperParameterRanges"]
    if "HyperParameterTuningJobObjective" not in raw:
        raise RequestError(f"{where}: a TuningObjective (or the job config's HyperParameterTuningJobObjective) must "
                           "be specified.")
    if max_jobs is not None:
        raw["ResourceLimits"] = {**raw["ResourceLimits"], "MaxNumberOfTrainingJobs": max_jobs}
    raw["StaticHyperParameters"] = body.get("StaticHyperParameters") or {}
    raw["MetricDefinitions"] = body.get("AlgorithmSpecification", {}).get("MetricDefinitions")
    try:
        return parse_spec(raw, train_names=check_names and not runs_user_code(body))
    except SpecError as exc:
        raise RequestError(f"{where}: {exc}") from None


def read(request: dict, check_names: bool = False) -> tuple[list[Definition], Completion]:
    """The request's training job definitions and completion criteria, validated (``check_names``: hold the
    definitions that run dogops' ``train`` to its hyperparameter names too); definitions the shared-out
    ``MaxNumberOfTrainingJobs`` gives no trial are left out."""
    try:
        found = _definitions(request, check_names)
        return found, completion(request, found[0].spec.minimize)
    except RequestError:
        raise
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:  # a member of the wrong form
        raise RequestError(f"The request is malformed: {type(exc).__name__}: {exc}") from None


def _definitions(request: dict, check_names: bool) -> list[Definition]:
    if "Autotune" in request:
        raise RequestError("Autotune is not emulated by the local tuner; leave it out to run the job locally.")
    warm = request.get("WarmStartConfig")
    if warm is not None and (warm.get("WarmStartType") not in WARM_START_TYPES
                             or not 1 <= len(warm.get("ParentHyperParameterTuningJobs") or []) <= 5):
        raise RequestError(f"WarmStartConfig needs a WarmStartType ({' or '.join(WARM_START_TYPES)}) and 1 to 5 "
                           "ParentHyperParameterTuningJobs.")
    config = request.get("HyperParameterTuningJobConfig")
    if not isinstance(config, dict) or "Strategy" not in config or "ResourceLimits" not in config:
        raise RequestError("HyperParameterTuningJobConfig with Strategy and ResourceLimits must be specified.")
    single, several = request.get("TrainingJobDefinition"), request.get("TrainingJobDefinitions")
    if (single is None) == (several is None):
        raise RequestError("Exactly one of TrainingJobDefinition and TrainingJobDefinitions must be specified.")
    if single is not None:
        bodies, names = [single], [None]
    else:
        if not isinstance(several, list) or not 1 <= len(several) <= 10:
            raise RequestError("TrainingJobDefinitions must hold 1 to 10 training job definitions.")
        names = [body.get("DefinitionName") for body in several]
        if not all(names) or len(set(names)) != len(names):
            raise RequestError("Each of TrainingJobDefinitions needs a DefinitionName of its own.")
        if config.get("Strategy") == "Grid" and len(several) > 1:
            raise RequestError("The Grid strategy over several TrainingJobDefinitions is not emulated by the local "
                               "tuner; tune each definition in a job of its own.")
        bodies = several
    total = config["ResourceLimits"].get("MaxNumberOfTrainingJobs")  # None: Grid's every combination
    if total is not None and int(total) < 1:
        raise RequestError("ResourceLimits.MaxNumberOfTrainingJobs must be at least 1.")
    found = []
    for index, (name, body) in enumerate(zip(names, bodies)):
        where = "TrainingJobDefinition" if name is None else f"TrainingJobDefinitions[{name}]"
        share = None if total is None else int(total) // len(bodies) + (index < int(total) % len(bodies))
        if share == 0:
            continue
        found.append(Definition(name, body, _spec(config, body, share, where, check_names),
                                resource_config(body, where)))
    if len({d.spec.minimize for d in found}) > 1:
        raise RequestError("The TuningObjective of every training job definition must have the same Type.")
    return found

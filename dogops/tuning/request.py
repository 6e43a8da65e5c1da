"""The tuning spec as a ``CreateHyperParameterTuningJob`` request, checked against botocore's model."""

from ..sagemaker_model import validate
from .spec import TuningSpec


def tuning_job_request(spec: TuningSpec, name: str, image: str, role_arn: str, training_s3: str, output_s3: str,
                       instance_type: str = "ml.m5.xlarge", max_runtime: int = 86400) -> dict:
    """The request SageMaker receives for ``spec``; the same ranges, objective and metrics as the local job."""
    ranges = {}
    for key in ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges"):
        items = spec.raw.get("ParameterRanges", {}).get(key, [])
        if items:
            ranges[key] = [{k: str(v) if k in ("MinValue", "MaxValue") else v for k, v in item.items()}
                           for item in items]
    config = {
        "Strategy": spec.strategy,
        "HyperParameterTuningJobObjective": {"Type": "Minimize" if spec.minimize else "Maximize",
                                             "MetricName": spec.objective},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": spec.max_jobs, "MaxParallelTrainingJobs": spec.max_parallel},
        "ParameterRanges": ranges,
        "TrainingJobEarlyStoppingType": "Auto" if spec.early_stopping else "Off",
        "RandomSeed": spec.seed,
    }
    if spec.strategy == "Hyperband":
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": spec.min_resource,
                                                                "MaxResource": spec.max_resource}}
    definition = {
        "StaticHyperParameters": spec.static,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File",
                                   "MetricDefinitions": spec.metric_definitions},
        "RoleArn": role_arn,
        "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": training_s3, "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": output_s3},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
    }
    request = {"HyperParameterTuningJobName": name, "HyperParameterTuningJobConfig": config,
               "TrainingJobDefinition": definition}
    validate(request, "CreateHyperParameterTuningJob")
    return request

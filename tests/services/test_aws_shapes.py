"""What the SageMaker SDK reads back is shaped as AWS answers it (issue 15, point 5), on a real emulator process with
real boto3 clients: SageMaker's describes carry AWS's fields and defaults, keep the configuration as sent and omit
what AWS omits (services/emulator/sagemaker_describes.py); an action or route the emulator lacks is a ClientError with
AWS's code, not an HTML page (unimplemented.py); IAM's policy simulator answers from the policies the emulator
enforces (iam_simulate.py), and enforcement agrees with it."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from . import processes

ROLE = "arn:aws:iam::123456789012:role/sdk-execution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-cpu-py310"
SERVING = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference@sha256:" + "c" * 64
RESOURCES = {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
# As SDK v2's PyTorch estimator sends them (its debugger and profiler defaults included).
PROFILER = {"S3OutputPath": "s3://bucket/output", "ProfilingIntervalInMilliseconds": 500}
PROFILER_RULES = [{"RuleConfigurationName": "ProfilerReport-1700000000", "RuleEvaluatorImage": "503895931360.dkr.ecr."
                   "us-east-1.amazonaws.com/sagemaker-debugger-rules:latest",
                   "RuleParameters": {"rule_to_invoke": "ProfilerReport"}}]
DEBUG_RULES = [{"RuleConfigurationName": "LossNotDecreasing", "RuleEvaluatorImage": "503895931360.dkr.ecr.us-east-1."
                "amazonaws.com/sagemaker-debugger-rules:latest", "RuleParameters": {"rule_to_invoke": "LossNotDecreasing"}}]
HYPERPARAMETERS = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://bucket/src/sourcedir.tar.gz"',
                   "sagemaker_container_log_level": "20", "sagemaker_region": '"us-east-1"', "epochs": "3"}
TRAINING_JOB = {
    "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File",
                               "MetricDefinitions": [{"Name": "accuracy", "Regex": "accuracy=([0-9.]+)"}]},
    "RoleArn": ROLE, "HyperParameters": HYPERPARAMETERS,
    "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": "s3://bucket/data"}}}],
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"}, "ResourceConfig": RESOURCES,
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "Environment": {"LOG_LEVEL": "debug"},
    "CheckpointConfig": {"S3Uri": "s3://bucket/checkpoints"}, "DebugHookConfig": {"S3OutputPath": "s3://bucket/output"},
    "DebugRuleConfigurations": DEBUG_RULES, "ProfilerConfig": PROFILER, "ProfilerRuleConfigurations": PROFILER_RULES,
    "RetryStrategy": {"MaximumRetryAttempts": 2}}
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}
INLINE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["sagemaker:Describe*", "sagemaker:DeleteModel"], "Resource": "*"},
    {"Effect": "Deny", "Action": "sagemaker:DeleteModel", "Resource": "arn:aws:sagemaker:*:*:model/keep-*"}]}
MANAGED = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject",
                                                  "Resource": "arn:aws:s3:::data/*"}}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """An emulator that runs no job: what it describes is what was created."""
    proc = processes.emulator(tmp_path_factory.mktemp("shapes"), DOGOPS_TRAINING_RUNNER="off")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def sm(emulator):
    return processes.client("sagemaker", emulator.url)


def _required(operation: str, answer: dict) -> list[str]:
    """The members botocore's output shape requires that ``answer`` lacks."""
    shape = boto3.client("sagemaker", region_name="us-east-1").meta.service_model.operation_model(operation).output_shape
    return [member for member in shape.required_members if member not in answer]


def _empties(answer: dict) -> list[str]:
    return [member for member, value in answer.items() if value in (None, {}, [])]


def test_training_job_as_aws_describes_it(sm):
    sm.create_training_job(TrainingJobName="shaped-job", **TRAINING_JOB)
    job = sm.describe_training_job(TrainingJobName="shaped-job")
    assert _required("DescribeTrainingJob", job) == []
    assert job["OutputDataConfig"] == {"S3OutputPath": "s3://bucket/output", "KmsKeyId": "", "CompressionType": "GZIP"}
    assert job["AlgorithmSpecification"] == {**TRAINING_JOB["AlgorithmSpecification"],
                                             "EnableSageMakerMetricsTimeSeries": False}
    assert job["InputDataConfig"] == [{"ChannelName": "training", "CompressionType": "None",
                                       "RecordWrapperType": "None", "DataSource": {"S3DataSource": {
                                           "S3DataType": "S3Prefix", "S3Uri": "s3://bucket/data",
                                           "S3DataDistributionType": "FullyReplicated"}}}]
    for member in ("HyperParameters", "ResourceConfig", "Environment", "CheckpointConfig", "DebugRuleConfigurations",
                   "ProfilerRuleConfigurations", "RetryStrategy", "RoleArn", "StoppingCondition"):
        assert job[member] == TRAINING_JOB[member], member
    assert job["ProfilerConfig"] == {**PROFILER, "DisableProfiler": False}
    assert job["ProfilingStatus"] == "Enabled"
    assert job["DebugHookConfig"] == {"S3OutputPath": "s3://bucket/output", "CollectionConfigurations": []}
    assert (job["EnableNetworkIsolation"], job["EnableInterContainerTrafficEncryption"],
            job["EnableManagedSpotTraining"]) == (False, False, False)
    assert "VpcConfig" not in job and _empties(job) == []


def test_a_bare_training_job_has_no_empty_members(sm):
    bare = {key: TRAINING_JOB[key] for key in ("RoleArn", "OutputDataConfig", "ResourceConfig", "StoppingCondition")}
    sm.create_training_job(TrainingJobName="bare-job", AlgorithmSpecification={
        "TrainingImage": IMAGE, "TrainingInputMode": "File"}, **bare)
    job = sm.describe_training_job(TrainingJobName="bare-job")
    assert _empties(job) == []
    assert "MetricDefinitions" not in job["AlgorithmSpecification"]  # moto's made-up definitions are gone
    for absent in ("HyperParameters", "Environment", "ProfilerConfig", "ProfilingStatus", "DebugHookConfig",
                   "RetryStrategy", "VpcConfig", "InputDataConfig"):
        assert absent not in job, absent


def test_model_endpoint_config_and_endpoint_as_aws_describes_them(sm):
    sm.create_model(ModelName="shaped-model", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": SERVING, "ModelDataUrl": "s3://bucket/output/model.tar.gz"})
    model = sm.describe_model(ModelName="shaped-model")
    assert _required("DescribeModel", model) == [] and _empties(model) == []
    assert "VpcConfig" not in model and "Containers" not in model  # SDK v3 stops on an empty VpcConfig
    assert model["PrimaryContainer"] == {
        "Image": SERVING, "Mode": "SingleModel", "Environment": {}, "ModelDataUrl": "s3://bucket/output/model.tar.gz",
        "ModelDataSource": {"S3DataSource": {"S3Uri": "s3://bucket/output/model.tar.gz", "S3DataType": "S3Object",
                                             "CompressionType": "Gzip"}}}
    assert model["ExecutionRoleArn"] == ROLE and model["EnableNetworkIsolation"] is False

    sm.create_model(ModelName="isolated-model", ExecutionRoleArn=ROLE, EnableNetworkIsolation=True,
                    PrimaryContainer={"Image": SERVING, "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}})
    isolated = sm.describe_model(ModelName="isolated-model")
    assert isolated["EnableNetworkIsolation"] is True
    assert isolated["PrimaryContainer"]["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}
    assert "ModelDataSource" not in isolated["PrimaryContainer"]

    sm.create_endpoint_config(EndpointConfigName="shaped-config", ProductionVariants=[
        {"VariantName": "a", "ModelName": "shaped-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"},
        {"VariantName": "b", "ModelName": "isolated-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 3.0}])
    config = sm.describe_endpoint_config(EndpointConfigName="shaped-config")
    assert _required("DescribeEndpointConfig", config) == [] and _empties(config) == []
    assert "DataCaptureConfig" not in config
    assert [v["InitialVariantWeight"] for v in config["ProductionVariants"]] == [1.0, 3.0]

    sm.create_endpoint(EndpointName="shaped-endpoint", EndpointConfigName="shaped-config")
    endpoint = sm.describe_endpoint(EndpointName="shaped-endpoint")
    assert _required("DescribeEndpoint", endpoint) == [] and _empties(endpoint) == []
    assert "DataCaptureConfig" not in endpoint
    variants = {v["VariantName"]: v for v in endpoint["ProductionVariants"]}
    assert (variants["a"]["CurrentWeight"], variants["a"]["DesiredWeight"]) == (1.0, 1.0)
    assert (variants["b"]["CurrentWeight"], variants["b"]["DesiredWeight"]) == (3.0, 3.0)
    images = variants["a"]["DeployedImages"]
    assert [(i["SpecifiedImage"], i["ResolvedImage"]) for i in images] == [(SERVING, SERVING)]  # pinned by digest
    assert images[0]["ResolutionTime"] == endpoint["LastModifiedTime"]


def test_tuning_job_as_aws_describes_it(sm):
    definition = {key: TRAINING_JOB[key] for key in ("AlgorithmSpecification", "RoleArn", "OutputDataConfig",
                                                       "ResourceConfig", "StoppingCondition")}
    config = {"Strategy": "Random", "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "accuracy"},
              "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
              "ParameterRanges": {"ContinuousParameterRanges": [
                  {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}]}}
    sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName="shaped-tuning", HyperParameterTuningJobConfig=config,
                                         TrainingJobDefinition={**definition, "StaticHyperParameters": HYPERPARAMETERS})
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="shaped-tuning")
    assert _required("DescribeHyperParameterTuningJob", job) == [] and _empties(job) == []
    described = job["HyperParameterTuningJobConfig"]
    assert described["TrainingJobEarlyStoppingType"] == "Off"  # HyperparameterTuner.attach reads it
    assert described["ParameterRanges"] == {**config["ParameterRanges"], "IntegerParameterRanges": [],
                                            "CategoricalParameterRanges": []}
    assert job["TrainingJobDefinition"]["StaticHyperParameters"] == {**HYPERPARAMETERS,
                                                                     "_tuning_objective_metric": "accuracy"}
    assert job["TrainingJobDefinition"]["AlgorithmSpecification"] == definition["AlgorithmSpecification"]


def _error(call) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("service, call, code, status", [
    ("sagemaker", lambda c: c.describe_device(DeviceName="d", DeviceFleetName="f"), "UnknownOperationException", 400),
    ("iam", lambda c: c.get_context_keys_for_principal_policy(PolicySourceArn=ROLE), "InvalidAction", 400),
    ("sts", lambda c: c.decode_authorization_message(EncodedMessage="x"), "InvalidAction", 400),
    ("lambda", lambda c: c.get_code_signing_config(CodeSigningConfigArn="arn:aws:lambda:us-east-1:123456789012:"
                                                   "code-signing-config:csc-0123456789abcdef0"),
     "UnknownOperationException", 404),
])
def test_what_the_emulator_lacks_is_an_aws_error(emulator, service, call, code, status):
    error = _error(lambda: call(processes.client(service, emulator.url)))
    assert (error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert "is not implemented by the dogops emulator" in error.response["Error"]["Message"]


@pytest.fixture(scope="module")
def role(emulator):
    """A role with an inline policy (an Allow and a narrower Deny) and a managed one."""
    iam = processes.client("iam", emulator.url)
    arn = iam.create_role(RoleName="simulated", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName="simulated", PolicyName="sagemaker", PolicyDocument=json.dumps(INLINE, indent=2))
    managed = iam.create_policy(PolicyName="read-data", PolicyDocument=json.dumps(MANAGED))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="simulated", PolicyArn=managed)
    return arn


def test_simulate_principal_policy_answers_from_the_roles_policies(emulator, role):
    iam = processes.client("iam", emulator.url)
    results = iam.simulate_principal_policy(
        PolicySourceArn=role, ActionNames=["sagemaker:DeleteModel", "s3:GetObject", "s3:PutObject"],
        ResourceArns=["arn:aws:sagemaker:us-east-1:123456789012:model/scratch",
                      "arn:aws:sagemaker:us-east-1:123456789012:model/keep-best", "arn:aws:s3:::data/train.csv"],
    )["EvaluationResults"]
    decisions = {(r["EvalActionName"], r["EvalResourceName"].rsplit(":", 1)[-1]): r for r in results}
    assert len(results) == 9
    allowed = decisions[("sagemaker:DeleteModel", "model/scratch")]
    assert allowed["EvalDecision"] == "allowed"
    # The inline policy's first statement: lines 4-11 of the indented document, its "{" and "}" at column 5.
    assert allowed["MatchedStatements"] == [{"SourcePolicyId": "sagemaker", "SourcePolicyType": "role",
                                             "StartPosition": {"Line": 4, "Column": 5},
                                             "EndPosition": {"Line": 11, "Column": 5}}]
    denied = decisions[("sagemaker:DeleteModel", "model/keep-best")]
    assert denied["EvalDecision"] == "explicitDeny"
    assert [(m["SourcePolicyId"], m["StartPosition"]["Line"]) for m in denied["MatchedStatements"]] == [("sagemaker", 12)]
    read = decisions[("s3:GetObject", "data/train.csv")]
    assert read["EvalDecision"] == "allowed"
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in read["MatchedStatements"]] == [("read-data",
                                                                                                   "user-managed")]
    write = decisions[("s3:PutObject", "data/train.csv")]
    assert (write["EvalDecision"], write["MatchedStatements"]) == ("implicitDeny", [])


def test_enforcement_agrees_with_the_simulation(emulator, role):
    """What the simulator says of the role is what the emulator does to its session's requests."""
    iam = processes.client("iam", emulator.url)
    credentials = processes.client("sts", emulator.url).assume_role(RoleArn=role, RoleSessionName="simulated")["Credentials"]
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1",
                      aws_access_key_id=credentials["AccessKeyId"],
                      aws_secret_access_key=credentials["SecretAccessKey"],
                      aws_session_token=credentials["SessionToken"])
    model = "arn:aws:sagemaker:us-east-1:123456789012:model/keep-best"
    calls = [("sagemaker:DescribeModel", model, lambda: sm.describe_model(ModelName="keep-best")),
             ("sagemaker:DeleteModel", model, lambda: sm.delete_model(ModelName="keep-best")),
             ("sagemaker:ListModels", "*", sm.list_models)]
    simulated, enforced = [], []
    for action, resource, call in calls:
        simulated.append(iam.simulate_principal_policy(PolicySourceArn=role, ActionNames=[action], ResourceArns=[
            resource])["EvaluationResults"][0]["EvalDecision"])
        try:
            call()
            enforced.append("passed")
        except ClientError as error:  # past enforcement, moto knows no such model
            enforced.append("refused" if error.response["Error"]["Code"] == "AccessDeniedException" else "passed")
    assert simulated == ["allowed", "explicitDeny", "implicitDeny"]
    assert enforced == ["passed", "refused", "refused"]


def test_simulation_of_a_users_groups_custom_policies_and_pages(emulator):
    iam = processes.client("iam", emulator.url)
    user = iam.create_user(UserName="analyst")["User"]["Arn"]
    iam.create_group(GroupName="readers")
    iam.add_user_to_group(GroupName="readers", UserName="analyst")
    iam.put_group_policy(GroupName="readers", PolicyName="read", PolicyDocument=json.dumps(MANAGED))
    result = iam.simulate_principal_policy(PolicySourceArn=user, ActionNames=["s3:GetObject"],
                                           ResourceArns=["arn:aws:s3:::data/x"])["EvaluationResults"][0]
    assert result["EvalDecision"] == "allowed"
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in result["MatchedStatements"]] == [("read", "group")]

    custom = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    first = iam.simulate_custom_policy(PolicyInputList=[custom], ActionNames=["s3:GetObject", "ec2:RunInstances"],
                                       MaxItems=1)
    assert first["IsTruncated"] is True and first["EvaluationResults"][0]["EvalDecision"] == "allowed"
    assert first["EvaluationResults"][0]["MatchedStatements"][0]["SourcePolicyId"] == "PolicyInputList.1"
    second = iam.simulate_custom_policy(PolicyInputList=[custom], ActionNames=["s3:GetObject", "ec2:RunInstances"],
                                        MaxItems=1, Marker=first["Marker"])
    assert second["IsTruncated"] is False
    assert [(r["EvalActionName"], r["EvalDecision"]) for r in second["EvaluationResults"]] == [
        ("ec2:RunInstances", "implicitDeny")]

    assert _error(lambda: iam.simulate_principal_policy(
        PolicySourceArn="arn:aws:iam::123456789012:role/nobody", ActionNames=["s3:GetObject"])).response["Error"][
        "Code"] == "NoSuchEntity"
    assert _error(lambda: iam.simulate_principal_policy(
        PolicySourceArn="arn:aws:s3:::data-bucket-name", ActionNames=["s3:GetObject"])).response["Error"]["Code"] == "InvalidInput"

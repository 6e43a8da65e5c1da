"""``python -m services.stack.bootstrap`` against the real emulator: seed, a real ``train`` on the seeded tree, publish.

Every step runs as the stack runs it, a subprocess configured only by the
environment; the results are read back through the emulator's control planes.
Last, the published function is invoked through the real gateway, in front of
the real ``serve`` on the trained model: the whole chain, with nothing faked.
"""

import base64
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from dogops.lambda_package import SOURCE, build_zip, function_zip
from services.stack import bootstrap, settings
from training import hyperparameters as hps
from training.sagemaker_env import SageMakerPaths

from ..conftest import run_script, script_env
from ..serving.conftest import Server
from . import processes

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "dogops-serve:local"


def step(env: dict, *args) -> str:
    result = subprocess.run([sys.executable, "-m", "services.stack.bootstrap", *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    proc = processes.emulator(tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def env(emulator) -> dict:
    return script_env(**{**settings.emulator_env(), "AWS_ENDPOINT_URL": emulator.url})


@pytest.fixture(scope="module")
def client(emulator):
    return lambda service: processes.client(service, emulator.url)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, env, cache_dir) -> Path:
    """A seeded SageMaker tree, trained on by the real ``train``."""
    base = tmp_path_factory.mktemp("opt-ml")
    step(env, "seed", "--base-dir", base)
    run_script("train", env={**env, "SAGEMAKER_BASE_DIR": str(base), "DOGOPS_CACHE_DIR": str(cache_dir)}, check=True)
    return base


@pytest.fixture(scope="module")
def published(base_dir, env) -> dict:
    return json.loads(step(env, "publish", "--base-dir", base_dir, "--image", IMAGE))


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_seed_uploads_the_data_and_copies_the_channel_down(base_dir, client):
    keys = {o["Key"] for page in client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=settings.BUCKET, Prefix="data/") for o in page.get("Contents", [])}
    data = _files(base_dir / "data")
    assert len(data) == 10 * (30 + 8 + 8)  # 10 classes: 30 train, a quarter (rounded) in each of valid and test
    assert keys == {f"data/{name}" for name in data}
    assert _files(base_dir / "input" / "data" / "training") == data


def test_seed_writes_the_sagemaker_config_train_reads(base_dir):
    paths = SageMakerPaths(base_dir)
    assert hps.from_strings(paths.hyperparameters()).backbone == "efficientnet_lite0"
    assert all(isinstance(v, str) for v in paths.hyperparameters().values())
    assert paths.hosts().hosts == ("algo-1",)
    resource = json.loads((paths.config_dir / "resourceconfig.json").read_text())
    assert {"current_instance_type", "network_interface_name"} <= resource.keys()
    assert json.loads((paths.config_dir / "inputdataconfig.json").read_text())["training"]["TrainingInputMode"] == "File"


def test_seed_twice_keeps_the_data_and_uploads_nothing_new(base_dir, env, client):
    before = {o["Key"]: o["ETag"] for o in client("s3").list_objects_v2(Bucket=settings.BUCKET)["Contents"]}
    step(env, "seed", "--base-dir", base_dir)
    after = {o["Key"]: o["ETag"] for o in client("s3").list_objects_v2(Bucket=settings.BUCKET)["Contents"]}
    assert after == before


def test_publish_uploads_the_trained_model_as_sagemaker_packs_it(published, base_dir, client):
    assert published == {"model_data_url": f"s3://{settings.BUCKET}/{bootstrap.MODEL_KEY}", "endpoint": "dogops",
                         "function": "dogops-predict"}
    body = client("s3").get_object(Bucket=settings.BUCKET, Key=bootstrap.MODEL_KEY)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert set(tar.getnames()) == _files(base_dir / "model")
        assert "manifest.json" in tar.getnames()


def test_publish_deploys_an_in_service_endpoint_on_the_model(published, client):
    sagemaker = client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=published["endpoint"])
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == published["model_data_url"]


def test_publish_deploys_the_function_with_its_settings(published, client):
    function = client("lambda").get_function(FunctionName=published["function"])
    config = function["Configuration"]
    assert (config["Handler"], config["Runtime"], config["Timeout"]) == ("lambda_function.lambda_handler",
                                                                         "python3.11", 90)
    assert config["Environment"]["Variables"] == {"ENDPOINT_NAME": published["endpoint"]}
    assert config["Role"].endswith(":role/dogops-predict-role")
    assert config["CodeSha256"] == function_zip()[1]
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 3


def test_the_deployed_code_is_the_function_source_at_the_zip_root(published, emulator):
    location = processes.client("lambda", emulator.url).get_function(FunctionName=published["function"])["Code"]["Location"]
    code = requests.get(location, timeout=10)  # pre-signed, as AWS hands it out
    assert code.status_code == 200 and code.content == function_zip()[0]
    with zipfile.ZipFile(io.BytesIO(code.content)) as archive:
        [info] = archive.infolist()
        assert info.filename == "lambda_function.py" and info.external_attr >> 16 == 0o100644
        assert archive.read(info) == SOURCE.read_bytes()


def test_the_role_may_invoke_only_this_endpoint_and_write_its_logs(published, client):
    iam = client("iam")
    role = iam.get_role(RoleName="dogops-predict-role")["Role"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert iam.list_attached_role_policies(RoleName="dogops-predict-role")["AttachedPolicies"] == []
    [name] = iam.list_role_policies(RoleName="dogops-predict-role")["PolicyNames"]
    statements = iam.get_role_policy(RoleName="dogops-predict-role", PolicyName=name)["PolicyDocument"]["Statement"]
    endpoint_arn = client("sagemaker").describe_endpoint(EndpointName=published["endpoint"])["EndpointArn"]
    actions = {}
    for statement in statements:
        assert statement["Effect"] == "Allow" and "*" not in json.dumps(statement["Action"])
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            actions[action] = statement["Resource"]
    assert actions.pop("sagemaker:InvokeEndpoint") == endpoint_arn
    log_group = f"arn:aws:logs:{settings.REGION}:{settings.ACCOUNT}:log-group:/aws/lambda/{published['function']}"
    assert actions == {"logs:CreateLogGroup": log_group, "logs:CreateLogStream": log_group + ":*",
                       "logs:PutLogEvents": log_group + ":*"}


def test_only_api_gateway_may_call_the_function(published, client):
    policy = json.loads(client("lambda").get_policy(FunctionName=published["function"])["Policy"])
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].endswith("/POST/predict")


def test_publish_again_is_idempotent(published, base_dir, env, client):
    lam, sagemaker = client("lambda"), client("sagemaker")
    before = lam.get_function(FunctionName=published["function"])["Configuration"]
    config = sagemaker.describe_endpoint(EndpointName=published["endpoint"])["EndpointConfigName"]
    assert json.loads(step(env, "publish", "--base-dir", base_dir, "--image", IMAGE)) == published
    after = lam.get_function(FunctionName=published["function"])["Configuration"]
    assert after["CodeSha256"] == before["CodeSha256"] and after["FunctionArn"] == before["FunctionArn"]
    assert len(sagemaker.list_endpoints()["Endpoints"]) == 1
    assert sagemaker.describe_endpoint(EndpointName=published["endpoint"])["EndpointConfigName"] == config
    assert len(json.loads(lam.get_policy(FunctionName=published["function"])["Policy"])["Statement"]) == 1


def test_a_retrained_model_rolls_the_endpoint_to_a_new_config(published, base_dir, env, client, tmp_path):
    sagemaker = client("sagemaker")
    original = sagemaker.describe_endpoint(EndpointName=published["endpoint"])["EndpointConfigName"]
    retrained = tmp_path / "opt-ml"
    shutil.copytree(base_dir / "model", retrained / "model")
    (retrained / "model" / "notes.txt").write_text("retrained\n")
    step(env, "publish", "--base-dir", retrained, "--image", IMAGE)  # UpdateEndpoint on the emulator
    rolled = sagemaker.describe_endpoint(EndpointName=published["endpoint"])
    assert rolled["EndpointConfigName"] != original and rolled["EndpointStatus"] == "InService"
    step(env, "publish", "--base-dir", base_dir, "--image", IMAGE)  # and back: the same bytes, the same config
    assert sagemaker.describe_endpoint(EndpointName=published["endpoint"])["EndpointConfigName"] == original


def test_publish_without_a_trained_model_says_so(tmp_path, env):
    result = subprocess.run([sys.executable, "-m", "services.stack.bootstrap", "publish", "--base-dir", str(tmp_path),
                             "--image", IMAGE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "holds no trained model: run `train` first" in result.stderr


def test_samples_are_a_dog_photo_and_one_image_per_class(tmp_path, env):
    names = json.loads(step(env, "samples", "--out", tmp_path))
    assert names[0] == "dog.jpg" and names[1:] == [f"{i:03d}.{b}.jpg" for i, b in enumerate(
        ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita", "Alaskan_malamute", "American_eskimo_dog",
         "American_foxhound", "American_staffordshire_terrier", "American_water_spaniel",
         "Anatolian_shepherd_dog"], 1)]
    for name in names:
        with Image.open(tmp_path / name) as image:
            assert image.format == "JPEG" and min(image.size) >= 128


def test_the_package_is_reproducible():
    assert function_zip() == function_zip()
    assert build_zip({"b": b"2", "a": b"1"}) == build_zip({"a": b"1", "b": b"2"})


def test_the_bootstrap_needs_no_torch():
    """It runs in the services image, which has no torch."""
    code = "import sys, services.stack.bootstrap; sys.exit(any(m.split('.')[0] == 'torch' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.fixture(scope="module")
def lambda_client(published, base_dir, emulator):
    """A Lambda client on a gateway whose endpoint is ``serve`` on the trained model."""
    server = Server(base_dir).wait_ready()
    processes.route(emulator.url, settings.ENDPOINT_NAME, server.url)
    gateway = processes.gateway(emulator.log.parent, emulator.url)
    yield processes.client("lambda", gateway.url, retries={"total_max_attempts": 1})
    gateway.stop()
    server.stop()


def invoke(lambda_client, event) -> tuple[int, dict]:
    response = lambda_client.invoke(FunctionName=settings.FUNCTION_NAME, Payload=json.dumps(event))
    assert response["StatusCode"] == 200 and "FunctionError" not in response, response
    answer = json.loads(response["Payload"].read())
    return answer["statusCode"], json.loads(answer["body"])


def test_the_published_function_classifies_a_photo_through_the_endpoint(lambda_client, base_dir):
    photo = sorted((base_dir / "data" / "test" / "004.Akita").iterdir())[0]
    status, body = invoke(lambda_client, {"image": base64.b64encode(photo.read_bytes()).decode()})
    assert status == 200 and body["endpoint"] == settings.ENDPOINT_NAME
    assert [p["rank"] for p in body["predictions"]] == [1, 2, 3, 4, 5]
    assert body["predictions"][0]["breed"] == "Akita"


def test_the_published_function_reports_what_the_model_refuses_as_bad_input(lambda_client):
    status, body = invoke(lambda_client, {"url": "http://169.254.169.254/latest/meta-data/"})
    assert status == 400 and "169.254.169.254" in body["message"]
    status, body = invoke(lambda_client, {"image": base64.b64encode(b"not an image").decode()})
    assert status == 400 and body["message"]


def test_seed_makes_the_sagemaker_execution_role_least_privilege(base_dir, client):
    """The role the SDK's configuration names: SageMaker may assume it; it reaches the stack's bucket, images, logs
    and metrics (the actions SDK v3 checks before training), and nothing else, as IAM's simulator judges it."""
    iam = client("iam")
    role = iam.get_role(RoleName=settings.SAGEMAKER_ROLE)["Role"]
    assert role["Arn"] == settings.sagemaker_role_arn()
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"

    def decision(action: str, resource: str) -> str:
        [result] = iam.simulate_principal_policy(PolicySourceArn=role["Arn"], ActionNames=[action],
                                                 ResourceArns=[resource])["EvaluationResults"]
        return result["EvalDecision"]

    bucket = f"arn:aws:s3:::{settings.BUCKET}"
    logs = f"arn:aws:logs:{settings.REGION}:{settings.ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:x"
    for action, resource in [("s3:GetObject", f"{bucket}/data/x.jpg"), ("s3:PutObject", f"{bucket}/job/model.tar.gz"),
                             ("s3:ListBucket", bucket), ("ecr:GetAuthorizationToken", "*"),
                             ("ecr:BatchGetImage", f"arn:aws:ecr:{settings.REGION}:763104351884:repository/pytorch"),
                             ("logs:PutLogEvents", logs), ("cloudwatch:PutMetricData", "*"),
                             ("ec2:CreateNetworkInterface", "*")]:
        assert decision(action, resource) == "allowed", action
    for action, resource in [("s3:GetObject", "arn:aws:s3:::another-bucket/x"), ("s3:DeleteObject", f"{bucket}/x"),
                             ("sagemaker:CreateTrainingJob", "*"), ("iam:PassRole", role["Arn"]),
                             ("lambda:InvokeFunction", "*"), ("logs:PutLogEvents", logs.replace("sagemaker", "lambda"))]:
        assert decision(action, resource) == "implicitDeny", action


def test_a_half_written_model_is_not_trusted_nor_published(base_dir, env, tmp_path):
    """A model directory whose weights a crash cut short: ``dogops up`` trains again (not current) and ``publish``
    refuses it, naming the file."""
    from services.stack.supervisor import model_is_current

    copy = tmp_path / "opt-ml"
    shutil.copytree(base_dir, copy)
    assert model_is_current(copy)
    weights = copy / "model" / "model.pth"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert not model_is_current(copy)
    result = subprocess.run([sys.executable, "-m", "services.stack.bootstrap", "publish", "--base-dir", str(copy),
                             "--image", IMAGE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "model.pth does not match its sha256" in result.stderr, result.stderr
    (copy / "model" / "manifest.json").unlink()  # the rewrite's first step: no manifest, no model
    assert not model_is_current(copy)

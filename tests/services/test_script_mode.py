"""Script mode (services/jobs/script_mode.py, training/entry.py): boto3's CreateTrainingJob with an AWS PyTorch
training container and the SageMaker Python SDK's hyperparameters runs the user's own script natively, through
AWS's sagemaker-training toolkit: source from S3, requirements.txt into the job's own venv, the SM_* environment,
--name value arguments, two hosts, model.tar.gz and output.tar.gz, metrics from the log, a failure's reason;
and a ContainerEntrypoint runs with the host's tree at /opt/ml."""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from services.stack import settings

from ..sdk_venvs import sdk_python
from .processes import Process, client

BUCKET = "script-mode-test"
DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311-ubuntu20.04-sagemaker"
ROLE = "arn:aws:iam::123456789012:role/dogops-dev-training"
USER_CODE = Path(__file__).parent / "user_code"
METRICS = [{"Name": "train:loss", "Regex": r"train_loss=([0-9.]+);"}]
ENDED = ("Completed", "Failed", "Stopped")


def _wheel() -> tuple[str, bytes]:
    """A pure-Python wheel of one module (``tinydep.answer() == 42``), as pip builds one."""
    name, files = "tinydep-1.0-py3-none-any.whl", {
        "tinydep.py": b"def answer():\n    return 42\n",
        "tinydep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for path, data in files.items()) + "tinydep-1.0.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, data in {**files, "tinydep-1.0.dist-info/RECORD": record.encode()}.items():
            wheel.writestr(path, data)
    return name, buffer.getvalue()


def source_files() -> dict[str, bytes]:
    """The user's source directory: the script, requirements.txt, the wheel it names."""
    wheel, data = _wheel()
    return {"train.py": (USER_CODE / "train.py").read_bytes(), wheel: data, "requirements.txt": f"./{wheel}\n".encode()}


def sourcedir() -> bytes:
    """The user's ``sourcedir.tar.gz`` as the SDK uploads it."""
    members = source_files()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, content in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def sdk_hyperparameters(**user) -> dict:
    """Hyperparameters as the SageMaker Python SDK v2's PyTorch estimator sends them (every value JSON-quoted)."""
    return {k: json.dumps(v) for k, v in {
        **user, "sagemaker_program": "train.py", "sagemaker_submit_directory": f"s3://{BUCKET}/code/sourcedir.tar.gz",
        "sagemaker_container_log_level": 20, "sagemaker_region": "us-east-1"}.items()}


def request(name: str, hyperparameters: dict, instances: int = 1, image: str = DLC, **spec) -> dict:
    return {"TrainingJobName": name, "RoleArn": ROLE, "HyperParameters": hyperparameters,
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File",
                                       "MetricDefinitions": METRICS, **spec},
            "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data", "S3DataDistributionType": "FullyReplicated"}}}],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": instances, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}}


def wait(sm, name: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in ENDED:
            return job
        time.sleep(0.3)
    raise AssertionError(f"{name} still {job['TrainingJobStatus']} / {job['SecondaryStatus']}")


def untar(s3, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def log_lines(logs, name: str, host: str) -> list[str]:
    group = "/aws/sagemaker/TrainingJobs"
    stream = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/{host}-")["logStreams"][0]
    return [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"],
                                                      startFromHead=True)["events"]]


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator with the user's data (three numbers) and source directory in its S3."""
    server = Process("services.emulator", tmp_path_factory.mktemp("script-mode"))
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    for i, value in enumerate(("1.5", "2.5", "4")):
        s3.put_object(Bucket=BUCKET, Key=f"data/value-{i}.txt", Body=value.encode())
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=sourcedir())
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def jobs(aws) -> dict[str, dict]:
    """Two hosts on the DLC; a failing script; a ContainerEntrypoint on the dogops image: created at once."""
    sm = client("sagemaker", aws)
    entrypoint = {"ContainerEntrypoint": ["/bin/bash"], "ContainerArguments": [
        "-c", "set -e; cd /opt/ml/input/data/training; cat value-*.txt > /opt/ml/model/values.txt; "
              "cp /opt/ml/input/config/resourceconfig.json /opt/ml/output/data/; echo entry_loss=0.5;"]}
    requests = {
        "two-hosts": request("two-hosts", sdk_hyperparameters(epochs=3, **{"learning-rate": 0.5}), instances=2),
        "failing": request("failing", sdk_hyperparameters(fail="the data is not what I expected")),
        "entrypoint": request("entrypoint", {}, image="dogops-training:dev", **entrypoint)}
    for body in requests.values():
        sm.create_training_job(**body)
    return {name: wait(sm, name) for name in requests}


def test_the_users_script_runs_on_two_hosts_with_the_toolkits_environment(aws, jobs):
    job = jobs["two-hosts"]
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    s3 = client("s3", aws)
    model = untar(s3, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert set(model) == {"model.txt", "seen-algo-1.json", "seen-algo-2.json"}
    assert model["model.txt"] == b"7.000000\n"  # 8 * (1 - 0.5**3), the script's own computation
    assert untar(s3, f"s3://{BUCKET}/output/two-hosts/output/output.tar.gz") == {"report.txt": b"3 values\n"}
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics == {"train:loss": 1.0}
    for host in ("algo-1", "algo-2"):
        seen = json.loads(model[f"seen-{host}.json"])
        env = seen["env"]
        assert seen["argv"] == ["--epochs", "3", "--learning-rate", "0.5"]  # no sagemaker_* ones
        assert json.loads(env["SM_USER_ARGS"]) == seen["argv"]
        assert json.loads(env["SM_HPS"]) == {"epochs": 3, "learning-rate": 0.5}
        assert json.loads(env["SM_HOSTS"]) == ["algo-1", "algo-2"] and env["SM_CURRENT_HOST"] == host
        assert json.loads(env["SM_CHANNELS"]) == ["training"]
        base = Path(env["SM_MODEL_DIR"]).parent
        assert base.parts[-3:] == (host, "opt", "ml")
        assert env["SM_CHANNEL_TRAINING"] == str(base / "input" / "data" / "training")
        assert env["SM_OUTPUT_DATA_DIR"] == str(base / "output" / "data")
        assert env["SM_MODULE_DIR"] == f"s3://{BUCKET}/code/sourcedir.tar.gz" and seen["cwd"] == str(base / "code")
        assert int(env["SM_NUM_CPUS"]) >= 1 and env["SM_NUM_GPUS"] == "0"
        training_env = json.loads(env["SM_TRAINING_ENV"])
        assert training_env["current_host"] == host and training_env["user_entry_point"] == "train.py"
        assert env["MASTER_ADDR"] == "127.0.0.1"
        # requirements.txt went into the job's own venv, never the stack's; the stack's torch is seen
        assert seen["answer"] == 42 and Path(seen["tinydep"]).is_relative_to(base.parent / "venv")
        assert Path(seen["python"]).parent == base.parent / "venv" / "bin"
        assert not any(Path(p, "tinydep.py").exists() for p in sys.path if p)
        from importlib.metadata import version
        assert seen["torch"] == version("torch")


def test_the_log_says_which_pytorch_was_asked_for_and_which_runs(aws, jobs):
    from importlib.metadata import version

    lines = log_lines(client("logs", aws), "two-hosts", "algo-1")
    assert lines[0] == (f"dogops: {DLC} asks for PyTorch 2.3.0 (cpu, py311); torch {version('torch')} of the "
                        "stack's Python runs it natively")
    assert "epoch=3 train_loss=1.0000;" in lines
    assert not any(line.startswith("dogops:") for line in log_lines(client("logs", aws), "two-hosts", "algo-2"))


def test_a_failing_script_fails_the_job_with_its_error(jobs):
    job = jobs["failing"]
    assert job["TrainingJobStatus"] == "Failed" and job["SecondaryStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1\n"), reason
    # the toolkit's ErrorMessage: the error lines of the script's stderr, as AWS's FailureReason shows them
    message = reason.split('ErrorMessage "', 1)[1]
    assert message.index("ValueError") < message.index("the data is not what I expected") < message.index("Command")
    assert len(reason) <= 1024


def test_a_container_entrypoint_runs_natively_with_its_tree_at_opt_ml(aws, jobs):
    job = jobs["entrypoint"]
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    s3 = client("s3", aws)
    assert untar(s3, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"values.txt": b"1.52.54"}
    output = untar(s3, f"s3://{BUCKET}/output/entrypoint/output/output.tar.gz")
    assert json.loads(output["resourceconfig.json"])["hosts"] == ["algo-1"]
    assert not Path("/opt/ml/model/values.txt").exists()  # the mapping stayed inside the job's process


def test_the_dlc_without_a_script_or_entrypoint_fails_clearly(aws):
    sm = client("sagemaker", aws)
    sm.create_training_job(**request("no-script", {"epochs": "1"}))
    job = wait(sm, "no-script")
    assert job["TrainingJobStatus"] == "Failed"
    assert "sagemaker_program" in job["FailureReason"] and "ContainerEntrypoint" in job["FailureReason"]


def sdk(venv: Path, script: str, tmp_path: Path, aws: str, **arguments) -> dict:
    """``script`` (in user_code/) run by the SDK venv's Python against the emulator; its last line's report."""
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    for name, content in source_files().items():
        (source / name).write_bytes(content)
    arguments = {"bucket": BUCKET, "data": f"s3://{BUCKET}/data", "role": ROLE, "source_dir": str(source),
                 **arguments}
    env = {**settings.emulator_env(), "AWS_ENDPOINT_URL": aws, "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(venv), str(USER_CODE / script), json.dumps(arguments)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_sdk_v2_pytorch_estimator_fits_the_users_script_on_two_instances(aws, tmp_path):
    """The real SDK in its own venv: ``PyTorch(entry_point=..., source_dir=...).fit()``; then the same script run
    directly, for the overhead of a training job (printed)."""
    name = "sdk-v2-fit"
    report = sdk(sdk_python(2), "fit_v2.py", tmp_path, aws, image=DLC, name=name)
    sm, s3 = client("sagemaker", aws), client("s3", aws)
    job = sm.describe_training_job(TrainingJobName=name)
    assert job["TrainingJobStatus"] == "Completed" and report["model_data"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert job["HyperParameters"]["sagemaker_program"] == '"train.py"'
    assert job["HyperParameters"]["sagemaker_submit_directory"] == f'"s3://{BUCKET}/{name}/source/sourcedir.tar.gz"'
    model = untar(s3, report["model_data"])
    assert model["model.txt"] == b"7.000000\n"
    assert json.loads(model["seen-algo-2.json"])["argv"] == ["--epochs", "3", "--learning-rate", "0.5"]
    assert {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]} == {"train:loss": 1.0}

    tree = tmp_path / "direct"
    for sub in ("model", "output", "data"):
        (tree / sub).mkdir(parents=True)
    for i, value in enumerate(("1.5", "2.5", "4")):
        (tree / "data" / f"value-{i}.txt").write_text(value)
    direct_env = {**os.environ, "SM_MODEL_DIR": str(tree / "model"), "SM_OUTPUT_DATA_DIR": str(tree / "output"),
                  "SM_CHANNEL_TRAINING": str(tree / "data"), "SM_CURRENT_HOST": "algo-1", "SM_HOSTS": '["algo-1"]',
                  "PYTHONPATH": str(tmp_path / "source" / _wheel()[0])}  # a pure-Python wheel imports from the zip
    started = time.monotonic()
    subprocess.run([sys.executable, str(tmp_path / "source" / "train.py"), "--epochs", "3", "--learning-rate", "0.5"],
                   env=direct_env, check=True, capture_output=True, timeout=120)
    direct = time.monotonic() - started
    assert (tree / "model" / "model.txt").read_text() == "7.000000\n"
    created_to_end = (job["TrainingEndTime"] - job["CreationTime"]).total_seconds()
    print(f"script mode, 2 instances: fit() to Completed {report['fit_to_completed_s']:.2f} s (the SDK polls every "
          f"5 s), CreateTrainingJob to TrainingEndTime {created_to_end:.2f} s; the script run directly {direct:.2f} s")


def test_the_sdk_v3_model_trainer_runs_its_drivers_natively_with_opt_ml_mapped(aws, tmp_path):
    """The real SDK v3: ``ModelTrainer(source_code=SourceCode(...)).train()`` sends a ContainerEntrypoint that runs
    its sm_drivers' sm_train.sh, which reads and writes /opt/ml: here the job's own tree."""
    iam = client("iam", aws)  # v3 checks its role's trust and permissions (SimulatePrincipalPolicy) first
    role = iam.create_role(RoleName="script-mode-v3", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName="script-mode-v3", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    report = sdk(sdk_python(3), "train_v3.py", tmp_path, aws, image=DLC, name="sdk-v3", role=role)
    sm, s3 = client("sagemaker", aws), client("s3", aws)
    job = sm.describe_training_job(TrainingJobName=report["job"])
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    assert {c["ChannelName"] for c in job["InputDataConfig"]} == {"training", "code", "sm_drivers"}
    model = untar(s3, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert model["model.txt"] == b"6.000000\n"  # 8 * (1 - 0.5**2)
    seen = json.loads(model["seen-algo-1.json"])
    assert seen["env"]["SM_MODEL_DIR"] == "/opt/ml/model" and seen["cwd"] == "/opt/ml/input/data/code"
    assert seen["argv"] == ["--epochs", "2", "--learning-rate", "0.5"] and seen["answer"] == 42
    assert Path(seen["python"]).parent.name == "bin" and Path(seen["python"]).parent.parent.name == "venv"
    lines = log_lines(client("logs", aws), report["job"], "algo-1")
    assert lines[0].startswith(f"dogops: {DLC} asks for PyTorch 2.3.0") and "epoch=2 train_loss=2.0000;" in lines

"""``dogops promote train --ec2`` on the local stack: the role, instance profile, security group and launch
template created on the emulator and checked for least privilege; the user data script run locally (IMDSv2
stand-in serving the instance role's credentials, ``train`` on the host for the container unless
DOGOPS_TEST_IMAGES=1) trains and uploads the model; interrupted by the spot notice, the next instance resumes
from the S3 checkpoint to the same model; cleanup leaves nothing tagged."""

import argparse
import base64
import io
import json
import re
import tarfile
import time

import pytest
import requests
import torch
import yaml

from dogops.promote import ec2, ec2_local, ec2_roles
from dogops.promote.config import load_stage

from ..conftest import BIN, FAST
from ..services.processes import client
from .conftest import emulator_with_data

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/training@sha256:" + "e" * 64
BUCKET = "dogops-ec2-test"
DATA, OUTPUT, CHECKPOINTS = f"s3://{BUCKET}/data", f"s3://{BUCKET}/dev/training", f"s3://{BUCKET}/dev/checkpoints"
# Without the feature cache every epoch runs the backbone: slow enough to interrupt after epoch 2 of 4.
EPOCHS = 6  # the notice comes after epoch 2: four epochs of margin for a loaded machine to stop in time
HP = {**FAST, "epochs": str(EPOCHS), "batch_size": "16", "patience": "0", "feature_cache": "false"}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator (IAM enforced for every key but the stack's root) with a small data set in its S3."""
    yield from emulator_with_data(tmp_path_factory, "promote-ec2", BUCKET, DATA)


@pytest.fixture
def stage():
    return load_stage("dev")


@pytest.fixture
def profile(session, stage):
    """The stage's instance profile, role and log group on the emulator: ``(profile ARN, role ARN)``."""
    profile_arn, role_arn, _ = ec2_roles.ensure_instance_profile(session, stage, DATA, OUTPUT, CHECKPOINTS, IMAGE)
    ec2.ensure_log_group(session, stage)
    return profile_arn, role_arn


def _statements(session, stage) -> dict:
    iam = session.client("iam")
    (name,) = iam.list_role_policies(RoleName=ec2_roles.name(stage))["PolicyNames"]
    document = iam.get_role_policy(RoleName=ec2_roles.name(stage), PolicyName=name)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    return {s["Sid"]: s for s in document["Statement"]}


def test_the_role_names_only_the_prefixes_the_repository_and_its_log_group(session, stage, profile):
    statements = _statements(session, stage)
    assert list(statements) == [*ec2_roles.SHARED, "WriteItsLogGroup", "SessionManagerRegisters",
                                "SessionManagerChannelsHaveNoResourceLevelPermission"]
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow" and not any("*" in a for a in actions)
        if "*" in resources:
            assert set(actions) <= ec2_roles.NO_RESOURCE_LEVEL, statement
    assert statements["ReadTheData"]["Resource"] == f"arn:aws:s3:::{BUCKET}/data/*"
    assert statements["WriteTheModel"]["Action"] == "s3:PutObject"
    assert statements["WriteTheModel"]["Resource"] == f"arn:aws:s3:::{BUCKET}/dev/training/*"
    assert statements["SyncTheCheckpoints"]["Resource"] == f"arn:aws:s3:::{BUCKET}/dev/checkpoints/*"
    assert statements["ListTheData"]["Condition"] == {"StringLike": {"s3:prefix": ["data", "data/*"]}}
    assert statements["PullTheImage"]["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/dogops-dev/training"
    assert all(":log-group:/dogops/dogops-dev/ec2-training" in r for r in statements["WriteItsLogGroup"]["Resource"])
    iam = session.client("iam")
    role = iam.get_role(RoleName=ec2_roles.name(stage))["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    instance_profile = iam.get_instance_profile(InstanceProfileName=ec2_roles.name(stage))["InstanceProfile"]
    assert [r["RoleName"] for r in instance_profile["Roles"]] == [ec2_roles.name(stage)]
    for tags in (role["Tags"], instance_profile["Tags"]):
        assert {t["Key"] for t in tags} == {"project", "stage", "expires-at"}


def test_the_role_is_refused_outside_its_prefixes(session, stage, profile):
    """Enforced on the emulator: the instance's credentials (the IMDS stand-in's) read the data, nothing else."""
    import boto3

    creds = ec2_local.role_credentials(session, profile[1], "refusal")()
    s3 = boto3.client("s3", aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["Token"], region_name="us-east-1")
    key = s3.list_objects_v2(Bucket=BUCKET, Prefix="data/")["Contents"][0]["Key"]
    s3.get_object(Bucket=BUCKET, Key=key)
    for call in (lambda: s3.put_object(Bucket=BUCKET, Key="data/x", Body=b"x"),
                 lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere/model.tar.gz", Body=b"x")):
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            call()


def test_the_security_group_has_no_inbound_rule_unless_ssh_from_one_address(session, stage):
    ec2_client = session.client("ec2")
    group = ec2.ensure_security_group(session, stage)
    described = ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert described["IpPermissions"] == []
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], r["IpRanges"]) for r in described["IpPermissionsEgress"]] \
        == [("tcp", 443, 443, [{"CidrIp": "0.0.0.0/0"}])]
    assert {t["Key"] for t in described["Tags"]} >= {"project", "stage", "expires-at"}
    assert ec2.ensure_security_group(session, stage, ec2.ssh_cidr("203.0.113.7")) == group
    (rule,) = ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpRanges"]) == (22, 22, [{"CidrIp": "203.0.113.7/32"}])
    ec2.ensure_security_group(session, stage)  # without --ssh-from-my-ip again: closed again
    assert ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"] == []
    for wide in ("203.0.113.0/24", "0.0.0.0/0"):
        with pytest.raises(argparse.ArgumentTypeError, match="one address"):
            ec2.ssh_cidr(wide)


def test_the_launch_template_is_one_time_spot_imdsv2_with_the_profile(session, stage, profile):
    group = ec2.ensure_security_group(session, stage)
    user_data = ec2.render_user_data("job-1", stage, IMAGE, DATA, f"{CHECKPOINTS}/job-1", OUTPUT, HP, "m5.xlarge")
    data = ec2.launch_template_data(stage, "job-1", "ami-12c6146b", "m5.xlarge", profile[0], group, user_data)
    version = ec2.put_launch_template(session, stage, data)
    assert ec2.put_launch_template(session, stage, data) == str(int(version) + 1)  # a new version per job
    ec2_client = session.client("ec2")
    stored = ec2_client.describe_launch_template_versions(LaunchTemplateName=ec2_roles.name(stage),
                                                          Versions=[version])["LaunchTemplateVersions"][0]
    got = stored["LaunchTemplateData"]
    assert got["InstanceMarketOptions"] == {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    assert got["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert got["MetadataOptions"]["HttpTokens"] == "required" and got["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert got["IamInstanceProfile"] == {"Arn": profile[0]} and got["SecurityGroupIds"] == [group]
    assert got["InstanceType"] == "m5.xlarge" and "KeyName" not in got
    script = base64.b64decode(got["UserData"]).decode()
    assert script == user_data and f"export DOGOPS_IMAGE={IMAGE}" in script and "def upload():" in script
    (template,) = ec2_client.describe_launch_templates(LaunchTemplateNames=[ec2_roles.name(stage)])["LaunchTemplates"]
    assert {t["Key"] for t in template["Tags"]} >= {"project", "stage", "expires-at"}


def test_the_imds_stand_in_insists_on_v2_tokens():
    imds = ec2_local.Imds()
    try:
        assert requests.get(f"{imds.url}/latest/meta-data/instance-id", timeout=5).status_code == 401
        token = requests.put(f"{imds.url}/latest/api/token", timeout=5,
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
        action = f"{imds.url}/latest/meta-data/spot/instance-action"
        assert requests.get(action, headers={"X-aws-ec2-metadata-token": token}, timeout=5).status_code == 404
        imds.interrupt()
        assert json.loads(requests.get(action, headers={"X-aws-ec2-metadata-token": token}, timeout=5).text)[
            "action"] == "terminate"
    finally:
        imds.close()


def _model(s3, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _weights(files: dict) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(files["model.pth"]), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(aws, tmp_path_factory):
    """The user data of one job run to its end by the local 'instance' (the instance role's credentials)."""
    import boto3

    from services.stack import settings

    dev = load_stage("dev")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**settings.emulator_env(), "AWS_ENDPOINT_URL": aws}.items():
            env.setenv(key, value)
        session = boto3.Session(region_name=settings.REGION)
        _, role_arn, _ = ec2_roles.ensure_instance_profile(session, dev, DATA, OUTPUT, CHECKPOINTS, IMAGE)
        ec2.ensure_log_group(session, dev)
        user_data = ec2.render_user_data("straight", dev, IMAGE, DATA, f"{CHECKPOINTS}/straight", OUTPUT, HP,
                                         "m5.xlarge")
        imds = ec2_local.Imds("i-0000000000straight", ec2_roles.name(dev),
                              ec2_local.role_credentials(session, role_arn, "straight"))
        root = tmp_path_factory.mktemp("instance-straight")
        began = time.monotonic()
        code, noticed = ec2_local.run_user_data(user_data, ec2_local.instance_env(
            aws, imds, root, train_on_host=str(BIN / "train"), sync_s=2), imds)
        TIMES["uninterrupted"] = time.monotonic() - began
        imds.close()
    return {"code": code, "noticed": noticed, "root": root, "imds": imds}


def test_the_user_data_trains_and_uploads_the_model_with_the_instance_role(aws, uninterrupted):
    log = (uninterrupted["root"] / "job.log").read_text()
    assert uninterrupted["code"] == 0 and not uninterrupted["noticed"], log
    assert "REHEARSAL: `train` on the host" in log and "epoch=4 " in log
    assert "iam/security-credentials" in " ".join(uninterrupted["imds"].requests)  # boto3 used the role's keys
    files = _model(client("s3", aws), f"{OUTPUT}/straight/output/model.tar.gz")
    assert set(files) == {"model.pth", "classes.json", "model_config.json", "metrics.json", "manifest.json"}
    logs = client("logs", aws)
    events = logs.get_log_events(logGroupName="/dogops/dogops-dev/ec2-training",
                                 logStreamName="straight/i-0000000000straight", startFromHead=True)["events"]
    assert any("model uploaded to" in e["message"] for e in events)
    keys = [c["Key"] for c in client("s3", aws).list_objects_v2(Bucket=BUCKET, Prefix="dev/checkpoints/straight/")[
        "Contents"]]
    assert keys == ["dev/checkpoints/straight/checkpoint.pt"]


def test_promote_train_ec2_is_interrupted_and_resumes_to_the_same_model(aws, session, uninterrupted, tmp_path,
                                                                         monkeypatch):
    """The whole command: template, instance, the spot notice after epoch 2, a second instance resuming from the
    S3 checkpoint, the same weights as the uninterrupted run, the cost, the candidate."""
    config = yaml.safe_load(open("promote.yaml"))
    config["training"] = {"data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS, "hyperparameters": HP}
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    for name, kwargs in (("--config", {}), ("--image", {}), ("--data", {}), ("--output", {}), ("--name", {}),
                         ("--instance-type", {}), ("--candidate", {}), ("--poll", {"type": float})):
        parser.add_argument(name, **kwargs)
    parser.add_argument("--aws", action="store_true")
    ec2.add_ec2_arguments(parser)
    candidate = tmp_path / ".dogops" / "candidate.json"
    args = parser.parse_args(["--ec2", "--config", str(path), "--image", IMAGE, "--name", "resumed", "--poll", "0.3",
                              "--candidate", str(candidate), "--ami", "ami-12c6146b"])
    monkeypatch.setenv("DOGOPS_SPOT_INTERRUPT", "epoch=2")
    monkeypatch.setenv("DOGOPS_SYNC_S", "2")
    lines = []
    began = time.monotonic()
    record = ec2.train_on_ec2(args, load_stage("dev"), session, echo=lines.append)
    TIMES["interrupted_and_resumed"] = time.monotonic() - began
    text = "\n".join(lines)
    for expected in ("spot interruption notice", "exited 143", "the next instance resumes", "(attempt 2)",
                     "resuming from checkpoint", "model uploaded to", ": terminated", "spot price now", "Completed"):
        assert expected in text, expected
    # The second instance resumes from exactly the checkpoint the first saved on the notice (posted once epoch 2
    # was logged; the training stops at its next batch or image batch, wherever that falls) and runs only the
    # epochs after it.
    first, second = text.split("(attempt 2)", 1)
    stop = re.search(r"stopped (?:before epoch (\d+)|at epoch (\d+), batch (\d+)); checkpoint saved", first)
    assert stop, f"the notice did not stop the training before its last epoch ended:\n{text}"
    epoch, batch = (int(stop[1]), 0) if stop[1] else (int(stop[2]), int(stop[3]))
    assert epoch >= 3, text
    assert re.search(rf"resuming from checkpoint \S+ at epoch {epoch}, batch {batch}\n", second + "\n"), text
    logged = [[int(n) for n in re.findall(r"\bepoch=(\d+) ", part)] for part in (first, second)]
    assert logged == [list(range(1, epoch)), list(range(epoch, EPOCHS + 1))], text
    assert record["model_data_url"] == f"{OUTPUT}/resumed/output/model.tar.gz" and record["instance_type"] == "m5.xlarge"
    assert json.loads(candidate.read_text()) == record and record["metrics"]["test_accuracy"] > 0
    s3 = client("s3", aws)
    got, want = _model(s3, record["model_data_url"]), _model(s3, f"{OUTPUT}/straight/output/model.tar.gz")
    assert got["metrics.json"] == want["metrics.json"]
    assert all(torch.equal(v, _weights(want)[k]) for k, v in _weights(got).items())
    running = session.client("ec2").describe_instances(Filters=[
        {"Name": "tag:dogops-job", "Values": ["resumed"]}])["Reservations"]
    assert [i["State"]["Name"] for r in running for i in r["Instances"]] == ["terminated", "terminated"]
    interrupted, resumed = [float(line.rsplit(" ", 2)[1]) for line in lines if " ended after " in line]
    TIMES.update(interrupted_attempt=interrupted, resumed_attempt=resumed)
    print(f"\nEC2 rehearsal wall times (s): {TIMES}")


def test_cleanup_leaves_nothing_tagged(session, stage, profile):
    ec2.ensure_security_group(session, stage)
    deleted = ec2.cleanup(stage, session)
    assert any(d.startswith("launch template") for d in deleted) and f"role {ec2_roles.name(stage)}" in deleted
    assert ec2.cleanup(stage, session) == []
    ec2_client = session.client("ec2")
    tagged = [{"Name": "tag:project", "Values": ["dogops"]}, {"Name": "tag:stage", "Values": ["dev"]}]
    assert ec2_client.describe_launch_templates(Filters=tagged)["LaunchTemplates"] == []
    assert ec2_client.describe_security_groups(Filters=tagged)["SecurityGroups"] == []
    live = ec2_client.describe_instances(Filters=[*tagged, {"Name": "instance-state-name",
                                                            "Values": ["pending", "running", "stopped"]}])
    assert live["Reservations"] == []
    iam = session.client("iam")
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == ec2_roles.name(stage)]
    assert not [p for p in iam.list_instance_profiles()["InstanceProfiles"]
                if p["InstanceProfileName"] == ec2_roles.name(stage)]

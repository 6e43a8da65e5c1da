"""``dogops promote train --ec2`` on the local stack: the role, instance profile, security group and launch
template made by the stage's training stack on the emulator and checked for least privilege; the job's own values
sent with RunInstances; the user data script run locally (IMDSv2 stand-in serving the instance role's
credentials, ``train`` on the host for the container unless DOGOPS_TEST_IMAGES=1) trains and uploads the model;
interrupted by the spot notice, the next instance resumes from the S3 checkpoint to the same model; ``dogops
destroy`` deletes the training stack and leaves nothing tagged."""

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

from dogops.promote import ec2, ec2_local, training_stack
from dogops.promote.config import load_stage
from dogops.promote.runs import Locations
from services.stack import settings

from ..conftest import BIN, FAST, run_script, script_env
from ..services.processes import client
from .conftest import emulator_with_data, role_statements

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/training@sha256:" + "e" * 64
BUCKET = "dogops-ec2-test"
DATA, OUTPUT, CHECKPOINTS = f"s3://{BUCKET}/data", f"s3://{BUCKET}/dev/training", f"s3://{BUCKET}/dev/checkpoints"
WHERE = Locations(DATA, OUTPUT, CHECKPOINTS)
NAME = "dogops-dev-ec2-training"  # the role's, instance profile's and launch template's
# From the SageMaker training jobs' role, by Sid (the policy the two roles share), then the EC2 role's own.
SHARED = ("ListTheData", "ReadTheData", "WriteTheModel", "ListTheCheckpoints", "SyncTheCheckpoints", "PullTheImage",
          "EcrLoginHasNoResourceLevelPermission")
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                     "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"}  # IAM takes only "*" for these
# Without the feature cache every epoch runs the backbone: slow enough to interrupt after epoch 2 of 20.
EPOCHS = 20  # the notice comes after epoch 2: the epochs after it (each ~0.3 s here) are the margin for the notice
# to travel (job log -> IMDS -> the watcher polling every second) on a loaded machine; 6 epochs were too few in CI
HP = {**FAST, "epochs": str(EPOCHS), "batch_size": "16", "patience": "0", "feature_cache": "false"}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator (IAM enforced for every key but the stack's root) with a small data set in its S3."""
    yield from emulator_with_data(tmp_path_factory, "promote-ec2", BUCKET, DATA)


@pytest.fixture
def stage():
    return load_stage("dev")


def ensure(session, stage, ssh_from: str | None = None, echo=lambda line: None) -> training_stack.Infrastructure:
    """The stage's training stack with its EC2 part (the default VPC), as ``promote train --ec2`` applies it."""
    access = training_stack.Ec2Access(ec2.vpc_of(session, stage), ssh_from)
    return training_stack.ensure(session, stage, WHERE, IMAGE, 30, echo, access)


@pytest.fixture
def infrastructure(session, stage) -> dict[str, str]:
    """The training stack's outputs: the EC2 role, instance profile, group, launch template and log group."""
    return ensure(session, stage).outputs


def test_the_role_names_only_the_prefixes_the_repository_and_its_log_group(session, stage, infrastructure):
    iam = session.client("iam")
    statements = role_statements(iam, NAME)
    assert set(statements) == {*SHARED, "WriteItsLogGroup", "SessionManagerRegisters",
                               "SessionManagerChannelsHaveNoResourceLevelPermission"}
    shared = iam.get_role_policy(RoleName="dogops-dev-training", PolicyName="training-data-model-image")
    shared = shared["PolicyDocument"] if isinstance(shared["PolicyDocument"], dict) else json.loads(
        shared["PolicyDocument"])
    assert [statements[sid] for sid in SHARED] == shared["Statement"]  # one policy, the two roles
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow" and not any("*" in a for a in actions)
        if "*" in resources:
            assert set(actions) <= NO_RESOURCE_LEVEL, statement
    assert statements["ReadTheData"]["Resource"] == f"arn:aws:s3:::{BUCKET}/data/*"
    assert statements["WriteTheModel"]["Action"] == "s3:PutObject"
    assert statements["WriteTheModel"]["Resource"] == f"arn:aws:s3:::{BUCKET}/dev/training/*"
    assert statements["SyncTheCheckpoints"]["Resource"] == f"arn:aws:s3:::{BUCKET}/dev/checkpoints/*"
    assert statements["ListTheData"]["Condition"] == {"StringLike": {"s3:prefix": ["data", "data/*"]}}
    assert statements["PullTheImage"]["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/dogops-dev/training"
    assert all(":log-group:/dogops/dogops-dev/ec2-training" in r for r in statements["WriteItsLogGroup"]["Resource"])
    role = iam.get_role(RoleName=NAME)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert {t["Key"] for t in role["Tags"]} == {"project", "stage", "expires-at"}
    instance_profile = iam.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert [r["RoleName"] for r in instance_profile["Roles"]] == [NAME]
    assert instance_profile["Arn"] == infrastructure["InstanceProfileArn"]  # (CloudFormation cannot tag profiles)
    owned = session.client("cloudformation").describe_stack_resources(StackName="dogops-dev-training")
    assert {r["LogicalResourceId"] for r in owned["StackResources"]} >= {"Ec2Role", "Ec2InstanceProfile",
                                                                          "Ec2SecurityGroup", "Ec2LaunchTemplate"}


def test_the_role_is_refused_outside_its_prefixes(session, stage, infrastructure):
    """Enforced on the emulator: the instance's credentials (the IMDS stand-in's) read the data, nothing else."""
    import boto3

    creds = ec2_local.role_credentials(session, infrastructure["Ec2RoleArn"], "refusal")()
    s3 = boto3.client("s3", aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["Token"], region_name="us-east-1")
    key = s3.list_objects_v2(Bucket=BUCKET, Prefix="data/")["Contents"][0]["Key"]
    s3.get_object(Bucket=BUCKET, Key=key)
    for call in (lambda: s3.put_object(Bucket=BUCKET, Key="data/x", Body=b"x"),
                 lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere/model.tar.gz", Body=b"x")):
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            call()


def test_the_security_group_has_no_inbound_rule_unless_ssh_from_one_address(session, stage):
    ec2_client, lines = session.client("ec2"), []
    group = ensure(session, stage).outputs["SecurityGroupId"]
    described = ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert described["IpPermissions"] == [] and described["VpcId"] == ec2.vpc_of(session, stage)
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], [c["CidrIp"] for c in r["IpRanges"]])
            for r in described["IpPermissionsEgress"]] == [("tcp", 443, 443, ["0.0.0.0/0"])]
    assert {t["Key"] for t in described["Tags"]} >= {"project", "stage", "expires-at"}
    opened = ensure(session, stage, ec2.ssh_cidr("203.0.113.7"), lines.append)
    assert opened.outputs["SecurityGroupId"] == group  # a stack update, in place
    assert "modify               Ec2SecurityGroup " in lines[0] and not opened.iam_changed
    (rule,) = ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], [c["CidrIp"] for c in rule["IpRanges"]]) == (22, 22, ["203.0.113.7/32"])
    ensure(session, stage, ec2.ssh_cidr("2001:db8::7"))
    (rule,) = ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert [c["CidrIpv6"] for c in rule["Ipv6Ranges"]] == ["2001:db8::7/128"] and rule["IpRanges"] == []
    ensure(session, stage)  # without --ssh-from-my-ip again: closed again
    assert ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"] == []
    for wide in ("203.0.113.0/24", "0.0.0.0/0"):
        with pytest.raises(argparse.ArgumentTypeError, match="one address"):
            ec2.ssh_cidr(wide)


def test_a_sagemaker_run_keeps_the_ec2_part_and_changes_nothing(session, stage, infrastructure):
    lines = []
    kept = training_stack.ensure(session, stage, WHERE, IMAGE, 30, lines.append)  # what `promote train` does
    assert kept.outputs == infrastructure and not kept.iam_changed and lines == []


def test_the_launch_template_is_one_time_spot_imdsv2_with_the_profile(session, stage, infrastructure):
    ec2_client = session.client("ec2")
    stored = ec2_client.describe_launch_template_versions(
        LaunchTemplateId=infrastructure["LaunchTemplateId"],
        Versions=[infrastructure["LaunchTemplateVersion"]])["LaunchTemplateVersions"][0]
    got = stored["LaunchTemplateData"]
    assert stored["LaunchTemplateName"] == NAME
    assert got["InstanceMarketOptions"] == {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    assert got["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert got["MetadataOptions"]["HttpTokens"] == "required" and got["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert got["IamInstanceProfile"] == {"Arn": infrastructure["InstanceProfileArn"]}
    assert got["SecurityGroupIds"] == [infrastructure["SecurityGroupId"]]
    (volume,) = got["BlockDeviceMappings"]
    assert volume["Ebs"] == {"VolumeSize": 30, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
    assert "UserData" not in got and "ImageId" not in got and "KeyName" not in got  # the job's, per run
    (template,) = ec2_client.describe_launch_templates(LaunchTemplateNames=[NAME])["LaunchTemplates"]
    assert {t["Key"] for t in template["Tags"]} >= {"project", "stage", "expires-at"}

    user_data = ec2.render_user_data("job-1", stage, IMAGE, DATA, f"{CHECKPOINTS}/job-1", OUTPUT, HP, "m5.xlarge",
                                     infrastructure["LogGroupName"])
    request = ec2.run_request(stage, "job-1", infrastructure, "ami-12c6146b", "m5.xlarge", user_data,
                              key_name="my-key")
    instance = ec2.launch(session, request, False)
    ec2_client.terminate_instances(InstanceIds=[instance["InstanceId"]])
    assert (instance["ImageId"], instance["InstanceType"], instance["KeyName"]) == ("ami-12c6146b", "m5.xlarge",
                                                                                   "my-key")
    tags = {t["Key"]: t["Value"] for t in ec2_client.describe_instances(InstanceIds=[instance["InstanceId"]])[
        "Reservations"][0]["Instances"][0]["Tags"]}
    assert tags["dogops-job"] == "job-1" and tags["dogops-path"] == "ec2-training" and tags["stage"] == "dev"
    assert tags["aws:ec2launchtemplate:version"] == infrastructure["LaunchTemplateVersion"]
    script = base64.b64decode(ec2_client.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
    assert script == user_data and f"export DOGOPS_IMAGE={IMAGE}" in script and "def upload():" in script
    assert "/dogops/dogops-dev/ec2-training" in script


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

    dev = load_stage("dev")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**settings.emulator_env(), "AWS_ENDPOINT_URL": aws}.items():
            env.setenv(key, value)
        session = boto3.Session(region_name=settings.REGION)
        made = ensure(session, dev).outputs
        user_data = ec2.render_user_data("straight", dev, IMAGE, DATA, f"{CHECKPOINTS}/straight", OUTPUT, HP,
                                         "m5.xlarge", made["LogGroupName"])
        imds = ec2_local.Imds("i-0000000000straight", made["Ec2RoleName"],
                              ec2_local.role_credentials(session, made["Ec2RoleArn"], "straight"))
        root = tmp_path_factory.mktemp("instance-straight")
        began = time.monotonic()
        code, noticed, _ = ec2_local.run_user_data(user_data, ec2_local.instance_env(
            aws, imds, root, train_on_host=str(BIN / "train"), sync_s=2), imds)
        TIMES["uninterrupted"] = time.monotonic() - began
        imds.close()
    return {"code": code, "noticed": noticed, "root": root, "imds": imds}


@pytest.mark.slow
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


@pytest.mark.slow
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
    for expected in ("spot interruption notice", "exited 143", "the next instance resumes", "(attempt 2, ",
                     "resuming from checkpoint", "model uploaded to", ": terminated", "spot price now", "Completed"):
        assert expected in text, expected
    # The second instance resumes from exactly the checkpoint the first saved on the notice (posted once epoch 2
    # was logged; the training stops at its next batch or image batch, wherever that falls) and runs only the
    # epochs after it.
    first, second = text.split("(attempt 2, ", 1)
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
    # The job's runtime is capped, not each instance's: the second instance's own power-off comes after what is left.
    caps = []
    for r in running:
        user_data = session.client("ec2").describe_instance_attribute(
            InstanceId=r["Instances"][0]["InstanceId"], Attribute="userData")["UserData"]["Value"]
        caps += [int(n) for n in re.findall(r"^MAX_RUN_S='?(\d+)'?$", base64.b64decode(user_data).decode(), re.M)]
    assert caps[0] == 86400 and caps[0] - caps[1] == pytest.approx(interrupted, abs=1.5), caps
    TIMES.update(interrupted_attempt=interrupted, resumed_attempt=resumed)
    print(f"\nEC2 rehearsal wall times (s): {TIMES}")


def test_the_instance_powers_itself_off_at_its_max_runtime_and_the_cli_says_so(aws, session, tmp_path):
    """The cap is the instance's own (systemd's timer, set first by the user data), not the CLI's polling: a job
    of 20 epochs with max_run_s 4 is powered off mid-way, the instance terminated, no model, the reason said."""
    config = yaml.safe_load(open("promote.yaml"))
    config["training"] = {"data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS, "hyperparameters": HP,
                          "max_run_s": 4}
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    for name, kwargs in (("--config", {}), ("--image", {}), ("--name", {}), ("--poll", {"type": float})):
        parser.add_argument(name, **kwargs)
    ec2.add_ec2_arguments(parser)
    args = parser.parse_args(["--ec2", "--config", str(path), "--image", IMAGE, "--name", "capped", "--poll", "0.3",
                              "--ami", "ami-12c6146b"])
    lines = []
    began = time.monotonic()
    with pytest.raises(SystemExit, match=r"capped: the instance reached its maximum runtime \(4 s, "
                                         r"training.max_run_s\) and powered itself off"):
        ec2.train_on_ec2(args, load_stage("dev"), session, echo=lines.append)
    assert time.monotonic() - began < 300  # not the CLI's own backstop, which comes at max_run_s + 300 s
    text = "\n".join(lines)  # the instance's own lines may be cut off by its power-off: its states say it
    assert ": terminated (Client.InstanceInitiatedShutdown: Instance initiated shutdown)" in text, text
    assert "model uploaded" not in text and "(attempt 2" not in text
    instances = session.client("ec2").describe_instances(Filters=[
        {"Name": "tag:dogops-job", "Values": ["capped"]}])["Reservations"]
    assert [(i["State"]["Name"], i["StateReason"]["Code"]) for r in instances for i in r["Instances"]] == [
        ("terminated", "Client.InstanceInitiatedShutdown")]
    assert {t["Key"] for r in instances for i in r["Instances"] for t in i["Tags"]} >= {"dogops-job", "project"}
    assert "dogops:shutdown" not in {t["Key"] for r in instances for i in r["Instances"] for t in i["Tags"]}
    s3 = client("s3", aws)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="dev/training/capped/")


def test_the_user_data_sets_the_cap_before_anything_else():
    text = ec2.render_user_data("job-1", load_stage("dev"), IMAGE, DATA, f"{CHECKPOINTS}/job-1", OUTPUT, HP,
                                "m5.xlarge", "/dogops/dogops-dev/ec2-training", 3600)
    assert "MAX_RUN_S=3600\n" in text
    cap = text.index('--on-boot="${MAX_RUN_S}s" --unit=dogops-max-runtime')
    assert cap < text.index("helper login") and cap < text.index("dnf install")
    assert 'say "could not set the max-runtime cap: not training"' in text


def test_dogops_destroy_deletes_the_training_stack_and_leaves_nothing_tagged(aws, session, stage, infrastructure):
    ec2_client = session.client("ec2")
    running = ec2.launch(session, ec2.run_request(stage, "left-running", infrastructure, "ami-12c6146b", "m5.xlarge",
                                                  "#!/bin/bash\n"), False)["InstanceId"]
    env = script_env(**{**settings.emulator_env(), "AWS_ENDPOINT_URL": aws})
    out = run_script("dogops", "destroy", "--stage", "dev", env=env, check=True).stdout
    for expected in ("stack dogops-dev: none", f"instance {running}: terminated", "stack dogops-dev-training: deleted",
                     "nothing tagged project=dogops stage=dev remains"):
        assert expected in out, out
    cfn = session.client("cloudformation")
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    tagged = [{"Name": "tag:project", "Values": ["dogops"]}, {"Name": "tag:stage", "Values": ["dev"]}]
    assert ec2_client.describe_launch_templates(Filters=tagged)["LaunchTemplates"] == []
    assert ec2_client.describe_security_groups(Filters=tagged)["SecurityGroups"] == []
    live = ec2_client.describe_instances(Filters=[*tagged, {"Name": "instance-state-name",
                                                            "Values": ["pending", "running", "stopped"]}])
    assert live["Reservations"] == []
    iam = session.client("iam")
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("dogops-dev-")]
    assert not [p for p in iam.list_instance_profiles()["InstanceProfiles"] if p["InstanceProfileName"] == NAME]
    assert client("logs", aws).describe_log_groups(logGroupNamePrefix="/dogops/dogops-dev/")["logGroups"] == []
    again = run_script("dogops", "destroy", "--stage", "dev", env=env, check=True).stdout
    assert "stack dogops-dev-training: none" in again

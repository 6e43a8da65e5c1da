"""``dogops promote train --ec2``: the training image on an EC2 spot instance (contracts §E, §B.8).

Per stage, tagged ``project``/``stage``/``expires-at``: a role and instance profile (``ec2_roles``), a log group,
a security group with no inbound rule (``--ssh-from-my-ip`` opens port 22 to that one address; Session Manager
otherwise) and only HTTPS out, and a launch template (one-time spot, shutdown terminates, IMDSv2 required with hop
limit 2 for the container, an encrypted gp3 root volume, the instance profile, the job's user data as a new
version). The user data (``ec2_user_data.sh`` carrying ``ec2_instance.py``) pulls the image by digest, trains with
the S3 data in an ``/opt/ml`` tree, checkpoints to ``<checkpoints>/<job>``, uploads
``<output>/<job>/output/model.tar.gz`` and shuts the instance down. A spot interruption is answered by launching
another instance with the same job, which resumes from the checkpoints (``--max-interruptions``).

On the local stack (no ``--aws``) the instance's user data, read back from the emulator, runs as a host process
(``ec2_local``); ``DOGOPS_SPOT_INTERRUPT=epoch=N`` posts the spot notice once the log shows epoch N.
"""

import argparse
import base64
import ipaddress
import os
import shlex
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ..s3upload import parse_s3_uri
from . import ec2_roles
from .config import Stage, while_propagating

DEFAULT_INSTANCE_TYPE = "m5.xlarge"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
USER_DATA = Path(__file__).with_name("ec2_user_data.sh")
HELPER = Path(__file__).with_name("ec2_instance.py")
USER_DATA_LIMIT = 16 * 1024  # EC2's limit, before base64
PATH_TAG = {"Key": "dogops-path", "Value": "ec2-training"}
SPOT_INTERRUPTED = "Server.SpotInstanceTermination"


def _tags(stage: Stage, *extra: dict) -> list[dict]:
    return [*stage.tags(), PATH_TAG, *extra]


def ssh_cidr(value: str) -> str:
    """The one address SSH is opened to: an IPv4 ``/32`` (or IPv6 ``/128``); a wider range is refused."""
    network = ipaddress.ip_network(value if "/" in value else f"{value}/{32 if ':' not in value else 128}")
    if network.num_addresses != 1:
        raise argparse.ArgumentTypeError(f"--ssh-from-my-ip takes one address (a /32), not {value}")
    return str(network)


def render_user_data(job: str, stage: Stage, image: str, data: str, checkpoints: str, output: str,
                     hyperparameters: dict, instance_type: str) -> str:
    """The instance's user data with the job's values (each shell-quoted) and the helper inlined."""
    import json

    values = {"JOB": job, "REGION": stage.region, "IMAGE": image, "DATA": data, "CHECKPOINTS": checkpoints,
              "OUTPUT": output, "LOG_GROUP": ec2_roles.log_group(stage), "INSTANCE_TYPE": instance_type,
              "HYPERPARAMETERS": json.dumps(hyperparameters, sort_keys=True)}
    text = USER_DATA.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", shlex.quote(value))
    helper = HELPER.read_text()
    if "\nDOGOPS_HELPER\n" in f"\n{helper}\n":
        raise ValueError("the helper contains the heredoc's delimiter")
    text = text.replace("@@HELPER@@", helper.rstrip("\n"))
    if len(text.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user data is {len(text.encode())} bytes, over EC2's {USER_DATA_LIMIT}")
    return text


def latest_ami(session) -> str:
    """Amazon Linux 2023 (x86_64), from AWS's public SSM parameter."""
    return session.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]


def ensure_log_group(session, stage: Stage) -> str:
    logs, group = session.client("logs"), ec2_roles.log_group(stage)
    try:
        logs.create_log_group(logGroupName=group, tags={t["Key"]: t["Value"] for t in stage.tags()})
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.put_retention_policy(logGroupName=group, retentionInDays=stage.log_retention_days)
    return group


def ensure_security_group(session, stage: Stage, ssh_from: str | None = None, subnet: str | None = None) -> str:
    """The stage's group: no inbound rule but SSH from ``ssh_from`` when given; outbound HTTPS only (S3, ECR,
    CloudWatch Logs, SSM, the package mirrors). Rules left by an earlier run are reconciled."""
    ec2, name = session.client("ec2"), ec2_roles.name(stage)
    if subnet:
        vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    else:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise SystemExit(f"no default VPC in {stage.region}: pass --subnet")
        vpc = vpcs[0]["VpcId"]
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]},
                                                  {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    if found:
        group = found[0]
    else:
        group_id = ec2.create_security_group(
            GroupName=name, VpcId=vpc, Description=f"{stage.project} {stage.name} EC2 training: no inbound",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(stage)}])["GroupId"]
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    gid = group["GroupId"]
    https = [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    ssh = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            **({"Ipv6Ranges": [{"CidrIpv6": ssh_from}]} if ":" in ssh_from else {"IpRanges": [{"CidrIp": ssh_from}]}),
            }] if ssh_from else []
    _reconcile(ec2, gid, group.get("IpPermissions", []), ssh, ingress=True)
    _reconcile(ec2, gid, group.get("IpPermissionsEgress", []), https, ingress=False)
    return gid


def _reconcile(ec2, gid: str, current: list[dict], wanted: list[dict], ingress: bool) -> None:
    def key(rule: dict) -> tuple:
        return (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort"),
                tuple(sorted(r["CidrIp"] for r in rule.get("IpRanges", []))),
                tuple(sorted(r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []))))

    clean = [{k: v for k, v in r.items() if k in ("IpProtocol", "FromPort", "ToPort", "IpRanges", "Ipv6Ranges")}
             for r in current]
    stale = [r for r in clean if key(r) not in {key(w) for w in wanted}]
    missing = [w for w in wanted if key(w) not in {key(r) for r in clean}]
    revoke, authorize = ((ec2.revoke_security_group_ingress, ec2.authorize_security_group_ingress) if ingress else
                         (ec2.revoke_security_group_egress, ec2.authorize_security_group_egress))
    if missing:
        authorize(GroupId=gid, IpPermissions=missing)
    if stale:
        revoke(GroupId=gid, IpPermissions=stale)


def launch_template_data(stage: Stage, job: str, ami: str, instance_type: str, profile_arn: str, group: str,
                         user_data: str, volume_gb: int = 30, key_name: str | None = None) -> dict:
    """The launch template's data: one-time spot, shutdown terminates, IMDSv2 only, the profile, the user data."""
    tags = _tags(stage, {"Key": "dogops-job", "Value": job})
    data = {"ImageId": ami, "InstanceType": instance_type, "IamInstanceProfile": {"Arn": profile_arn},
            "SecurityGroupIds": [group], "UserData": base64.b64encode(user_data.encode()).decode(),
            "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2},
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                "VolumeSize": int(volume_gb), "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                  {"ResourceType": "volume", "Tags": tags}]}
    if key_name:
        data["KeyName"] = key_name
    return data


def put_launch_template(session, stage: Stage, data: dict) -> str:
    """Create the stage's launch template, or add ``data`` as a new version; the version number."""
    ec2, name = session.client("ec2"), ec2_roles.name(stage)
    try:
        created = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data, TagSpecifications=[
            {"ResourceType": "launch-template", "Tags": _tags(stage)}])["LaunchTemplate"]
        return str(created["LatestVersionNumber"])
    except ec2.exceptions.ClientError as exc:
        if "AlreadyExists" not in exc.response["Error"]["Code"]:
            raise
    version = ec2.create_launch_template_version(LaunchTemplateName=name, LaunchTemplateData=data)
    return str(version["LaunchTemplateVersion"]["VersionNumber"])


def launch(session, stage: Stage, version: str, subnet: str | None, retry: bool, echo=print,
           attempts: int = 8) -> dict:
    """RunInstances from the template; a profile created just now may take seconds to be usable on AWS."""
    ec2 = session.client("ec2")
    extra = {"SubnetId": subnet} if subnet else {}
    return while_propagating(lambda: ec2.run_instances(MinCount=1, MaxCount=1, **extra, LaunchTemplate={
        "LaunchTemplateName": ec2_roles.name(stage), "Version": version})["Instances"][0],
        "instance profile", retry, echo, attempts, longest=20)


class Watch:
    """An instance to its end: state changes, the job's log stream, the model's arrival."""

    def __init__(self, session, stage: Stage, job: str, instance_id: str, model_uri: str, echo=print):
        self.ec2, self.logs, self.s3 = (session.client(s) for s in ("ec2", "logs", "s3"))
        self.group, self.stream = ec2_roles.log_group(stage), f"{job}/{instance_id}"
        self.instance_id, self.model_uri, self.echo = instance_id, model_uri, echo
        self.token, self.lines, self.state = None, [], None

    def tail(self) -> None:
        while True:
            kwargs = {"nextToken": self.token} if self.token else {}
            try:
                page = self.logs.get_log_events(logGroupName=self.group, logStreamName=self.stream,
                                                startFromHead=True, **kwargs)
            except self.logs.exceptions.ResourceNotFoundException:
                return
            self.token = page["nextForwardToken"]
            for event in page["events"]:
                self.lines.append(event["message"])
                self.echo(f"[{self.instance_id}] {event['message']}")
            if not page["events"]:
                return

    def model_arrived(self) -> bool:
        bucket, key = parse_s3_uri(self.model_uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except self.s3.exceptions.ClientError:
            return False

    def until_ended(self, poll_s: float, max_run_s: float, running=lambda: True) -> dict:
        """Poll until the instance is terminated (or stopped); over ``max_run_s`` it is terminated."""
        started = time.monotonic()
        while True:
            instance = self.ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"][0]["Instances"][0]
            self.tail()
            if instance["State"]["Name"] != self.state:
                self.state = instance["State"]["Name"]
                reason = instance.get("StateReason", {}).get("Message", "")
                self.echo(f"instance {self.instance_id}: {self.state}{f' ({reason})' if reason else ''}")
            if self.state in ("terminated", "stopped") and not running():
                self.tail()
                return instance
            if time.monotonic() - started > max_run_s:
                self.echo(f"instance {self.instance_id} ran over {max_run_s} s: terminating it")
                self.ec2.terminate_instances(InstanceIds=[self.instance_id])
                max_run_s = float("inf")
            time.sleep(poll_s)


def spot_price(session, instance_type: str) -> float | None:
    """The lowest current Linux spot price of ``instance_type`` over the region's zones (USD per hour)."""
    history = session.client("ec2").describe_spot_price_history(
        InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
        StartTime=datetime.now(timezone.utc))["SpotPriceHistory"]
    return min((float(h["SpotPrice"]) for h in history), default=None)


def cost_lines(stage: Stage, instance_type: str, seconds: float, spot: float | None) -> list[str]:
    """Spot cost of the instance time, and the on-demand price from ``prices.json`` when it lists one."""
    from .prices import load_prices

    on_demand = load_prices()["regions"].get(stage.region, {}).get("ec2_per_hour", {}).get(instance_type)
    hours = seconds / 3600
    lines = [f"  instance time {seconds:.0f} s on {instance_type} spot"]
    if spot is not None:
        lines.append(f"  spot price now ${spot:.4f}/h (lowest zone) -> about ${spot * hours:.4f} (EBS extra)")
    if on_demand:
        saving = f", spot saving {(1 - spot / on_demand) * 100:.0f}%" if spot is not None else ""
        lines.append(f"  on demand ${on_demand:.4f}/h -> ${on_demand * hours:.4f}{saving}")
    return lines


def _job(stage: Stage, job: str, image: str, data: str, model_uri: str, hyperparameters: dict, instance_type: str,
         seconds: float, lines: list[str]) -> dict:
    """The run described as ``DescribeTrainingJob`` would, for ``train.record_candidate``."""
    from training.metrics import parse_metrics

    metrics = {}
    for line in lines:
        metrics.update(parse_metrics(line))
    return {"TrainingJobName": job, "TrainingJobStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in metrics.items()],
            "HyperParameters": hyperparameters, "AlgorithmSpecification": {"TrainingImage": image},
            "InputDataConfig": [{"DataSource": {"S3DataSource": {"S3Uri": data}}}],
            "ResourceConfig": {"InstanceCount": 1, "InstanceType": instance_type}, "EnableManagedSpotTraining": True,
            "BillableTimeInSeconds": round(seconds), "TrainingTimeInSeconds": round(seconds)}


def _run_locally(session, stage: Stage, instance: dict, role_arn: str, interrupt_at: str | None,
                 root: Path) -> dict:
    """The local stack's instance: its user data (as the emulator stored it) run by a thread; the instance is
    terminated on the emulator when the script ends (its shutdown). ``{"running": callable, "noticed": bool}``."""
    from . import ec2_local

    ec2, iid = session.client("ec2"), instance["InstanceId"]
    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=iid, Attribute="userData")["UserData"]["Value"]).decode()
    imds = ec2_local.Imds(iid, ec2_roles.name(stage), ec2_local.role_credentials(session, role_arn, iid))
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    docker = os.environ.get("DOGOPS_EC2_DOCKER")
    env = ec2_local.instance_env(endpoint, imds, root / iid, docker=docker,
                                 train_on_host=None if docker else str(Path(sys.executable).parent / "train"),
                                 sync_s=int(os.environ.get("DOGOPS_SYNC_S", "60")))
    state = {"done": False, "noticed": False}

    def run():
        try:
            _, state["noticed"] = ec2_local.run_user_data(user_data, env, imds, interrupt_at)
        finally:
            ec2.terminate_instances(InstanceIds=[iid])
            imds.close()
            state["done"] = True

    threading.Thread(target=run, daemon=True).start()
    return state


def train_on_ec2(args, stage: Stage, session, echo=print) -> dict:
    """``dogops promote train --ec2``: profile, group, template, instance(s) to the model, cost, candidate."""
    from .train import CANDIDATE, locations, record_candidate, settings

    local = not getattr(args, "aws", False)
    conf = settings(stage.name, args.config)
    where = locations(conf, getattr(args, "data", None), getattr(args, "output", None))
    data, output = where.data, where.output
    job = getattr(args, "name", None) or \
        f"{stage.project}-{stage.name}-ec2-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    checkpoints = f"{where.checkpoints}/{job}"
    model_uri = f"{output}/{job}/output/model.tar.gz"
    instance_type = (getattr(args, "instance_type", None) or DEFAULT_INSTANCE_TYPE).removeprefix("ml.")
    profile, role_arn, created = ec2_roles.ensure_instance_profile(session, stage, data, output,
                                                                   where.checkpoints, args.image)
    ensure_log_group(session, stage)
    group = ensure_security_group(session, stage, getattr(args, "ssh_from_my_ip", None), getattr(args, "subnet", None))
    ami = getattr(args, "ami", None) or latest_ami(session)
    user_data = render_user_data(job, stage, args.image, data, checkpoints, output, conf["hyperparameters"],
                                 instance_type)
    version = put_launch_template(session, stage, launch_template_data(
        stage, job, ami, instance_type, profile, group, user_data, conf.get("volume_gb", 30),
        getattr(args, "key_name", None)))
    echo(f"EC2 training {job}: {instance_type} spot, {ami}, launch template {ec2_roles.name(stage)} v{version}, "
         f"security group {group} ({'SSH from ' + args.ssh_from_my_ip if getattr(args, 'ssh_from_my_ip', None) else 'no inbound: aws ssm start-session'}), "
         f"role {role_arn}")
    rehearsal = os.environ.get("DOGOPS_SPOT_INTERRUPT", "")
    interrupt_at = f"epoch={rehearsal.split('=', 1)[1]} " if local and rehearsal.startswith("epoch=") else None
    seconds, lines = 0.0, []
    with tempfile.TemporaryDirectory(prefix=f"dogops-ec2-{job}-") as tmp:
        for attempt in range(getattr(args, "max_interruptions", 3) + 1):
            instance = launch(session, stage, version, getattr(args, "subnet", None), created, echo)
            echo(f"instance {instance['InstanceId']} launched (attempt {attempt + 1})")
            began = time.monotonic()
            local_run = _run_locally(session, stage, instance, role_arn, interrupt_at if attempt == 0 else None,
                                     Path(tmp)) if local else {"done": True, "noticed": False}
            watch = Watch(session, stage, job, instance["InstanceId"], model_uri, echo)
            ended = watch.until_ended(getattr(args, "poll", 5.0), float(conf.get("max_run_s", 86400)),
                                      lambda run=local_run: not run["done"])
            seconds += time.monotonic() - began
            echo(f"instance {instance['InstanceId']} ended after {time.monotonic() - began:.1f} s")
            lines += watch.lines
            if watch.model_arrived():
                break
            reason = ended.get("StateReason", {}).get("Code")
            if reason == SPOT_INTERRUPTED or local_run["noticed"]:
                echo("spot interruption: another instance resumes from the checkpoints")
                continue
            raise SystemExit(f"EC2 training {job} ended without a model ({reason}); see the log above and "
                             f"{ec2_roles.log_group(stage)}")
        else:
            raise SystemExit(f"EC2 training {job}: interrupted more than {args.max_interruptions} times")
    echo(f"EC2 training {job}: Completed; model {model_uri}")
    for line in cost_lines(stage, instance_type, seconds, spot_price(session, instance_type)):
        echo(line)
    record = record_candidate(_job(stage, job, args.image, data, model_uri, conf["hyperparameters"], instance_type,
                                   seconds, lines), stage, getattr(args, "candidate", None) or CANDIDATE)
    echo(f"recorded as the {stage.name} candidate")
    return record


def cleanup(stage: Stage, session) -> list[str]:
    """Delete what ``--ec2`` created for the stage (for ``dogops destroy``); what was deleted."""
    ec2, logs, done = session.client("ec2"), session.client("logs"), []
    filters = [{"Name": "tag:project", "Values": [stage.project]}, {"Name": "tag:stage", "Values": [stage.name]},
               {"Name": f"tag:{PATH_TAG['Key']}", "Values": [PATH_TAG["Value"]]},
               {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 60})
        done += [f"instance {i}" for i in ids]
    name = ec2_roles.name(stage)
    templates = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])
    for template in templates["LaunchTemplates"]:
        ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
        done.append(f"launch template {name}")
    for group in ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]},
                                                       {"Name": "tag:stage", "Values": [stage.name]}])["SecurityGroups"]:
        ec2.delete_security_group(GroupId=group["GroupId"])
        done.append(f"security group {group['GroupId']}")
    done += ec2_roles.delete_instance_profile(session, stage)
    try:
        logs.delete_log_group(logGroupName=ec2_roles.log_group(stage))
        done.append(f"log group {ec2_roles.log_group(stage)}")
    except logs.exceptions.ResourceNotFoundException:
        pass
    return done


def add_ec2_arguments(train) -> None:
    """``--ec2`` and its options, on the ``dogops promote train`` parser."""
    train.add_argument("--ec2", action="store_true", help=f"train on an EC2 spot instance instead of SageMaker "
                       f"(--instance-type default {DEFAULT_INSTANCE_TYPE}; an ml. prefix is dropped)")
    train.add_argument("--ssh-from-my-ip", type=ssh_cidr, metavar="IP[/32]",
                       help="--ec2: allow SSH from this one address (default: no inbound rule; Session Manager)")
    train.add_argument("--key-name", help="--ec2: an EC2 key pair for SSH")
    train.add_argument("--ami", help="--ec2: the image (default: the latest Amazon Linux 2023, x86_64)")
    train.add_argument("--subnet", help="--ec2: a subnet (default: the default VPC's)")
    train.add_argument("--max-interruptions", type=int, default=3,
                       help="--ec2: spot interruptions answered with a new instance (default: 3)")

"""``dogops promote train --ec2``: the training image on an EC2 spot instance (contracts §E, §B.8).

Per stage, in the stage's training stack (``training_stack``, ``training.yaml``), tagged
``project``/``stage``/``expires-at``: a role and instance profile, a log group, a security group with no inbound
rule (``--ssh-from-my-ip`` opens port 22 to that one address; Session Manager otherwise) and only HTTPS out, and a
launch template (one-time spot, shutdown terminates, IMDSv2 required with hop limit 2 for the container, an
encrypted gp3 root volume, the instance profile). Per job, with ``RunInstances`` over that template: the AMI, the
instance type, the key pair, the job's tags and its user data (``ec2_user_data.sh`` carrying ``ec2_instance.py``),
which pulls the image by digest, trains with the S3 data in an ``/opt/ml`` tree, checkpoints to
``<checkpoints>/<job>``, uploads ``<output>/<job>/output/model.tar.gz`` and shuts the instance down. A spot
interruption is answered by launching another instance with the same request, which resumes from the checkpoints
(``--max-interruptions``).

On the local stack (no ``--aws``) the instance's user data, read back from the emulator, runs as a host process
(``ec2_local``); ``DOGOPS_SPOT_INTERRUPT=epoch=N`` posts the spot notice once the log shows epoch N.
"""

import argparse
import base64
import ipaddress
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from training.metrics import parse_metrics

from ..iam_propagation import INSTANCE_PROFILE_NOT_READY, while_propagating
from ..s3upload import parse_s3_uri
from .config import Stage
from .runs import CANDIDATE, locations, record_candidate, settings
from .training_stack import Ec2Access, ensure

DEFAULT_INSTANCE_TYPE = "m5.xlarge"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
USER_DATA = Path(__file__).with_name("ec2_user_data.sh")
HELPER = Path(__file__).with_name("ec2_instance.py")
USER_DATA_LIMIT = 16 * 1024  # EC2's limit, before base64
PATH_TAG = {"Key": "dogops-path", "Value": "ec2-training"}
SPOT_INTERRUPTED = "Server.SpotInstanceTermination"
CLI_GRACE_S = 300  # the CLI terminates an instance this long after its own cap should have powered it off


def ssh_cidr(value: str) -> str:
    """The one address SSH is opened to: an IPv4 ``/32`` (or IPv6 ``/128``); a wider range is refused."""
    network = ipaddress.ip_network(value if "/" in value else f"{value}/{32 if ':' not in value else 128}")
    if network.num_addresses != 1:
        raise argparse.ArgumentTypeError(f"--ssh-from-my-ip takes one address (a /32), not {value}")
    return str(network)


def render_user_data(job: str, stage: Stage, image: str, data: str, checkpoints: str, output: str,
                     hyperparameters: dict, instance_type: str, log_group: str, max_run_s: int = 86400) -> str:
    """The instance's user data with the job's values (each shell-quoted) and the helper inlined; ``max_run_s``
    is the instance's own cap (it powers itself off that long after boot)."""
    values = {"JOB": job, "REGION": stage.region, "IMAGE": image, "DATA": data, "CHECKPOINTS": checkpoints,
              "OUTPUT": output, "LOG_GROUP": log_group, "INSTANCE_TYPE": instance_type,
              "HYPERPARAMETERS": json.dumps(hyperparameters, sort_keys=True), "MAX_RUN_S": str(int(max_run_s))}
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


def vpc_of(session, stage: Stage, subnet: str | None = None) -> str:
    """The VPC the instances run in: ``subnet``'s, else the region's default VPC."""
    ec2 = session.client("ec2")
    if subnet:
        return ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise SystemExit(f"no default VPC in {stage.region}: pass --subnet")
    return vpcs[0]["VpcId"]


def run_request(stage: Stage, job: str, infrastructure: dict[str, str], ami: str, instance_type: str,
                user_data: str, subnet: str | None = None, key_name: str | None = None) -> dict:
    """The job's ``RunInstances`` request: the training stack's launch template (the version the stack made) and
    the job's own AMI, instance type, user data (boto3 base64-encodes it), key pair and tags."""
    tags = [*stage.tags(), PATH_TAG, {"Key": "dogops-job", "Value": job}]
    request = {"MinCount": 1, "MaxCount": 1, "ImageId": ami, "InstanceType": instance_type, "UserData": user_data,
               "LaunchTemplate": {"LaunchTemplateId": infrastructure["LaunchTemplateId"],
                                  "Version": infrastructure["LaunchTemplateVersion"]},
               "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                     {"ResourceType": "volume", "Tags": tags}]}
    if subnet:
        request["SubnetId"] = subnet
    if key_name:
        request["KeyName"] = key_name
    return request


def launch(session, request: dict, profile_changed: bool, echo=print) -> dict:
    """RunInstances; an instance profile made just now may take seconds to be usable on AWS (``iam_propagation``)."""
    ec2 = session.client("ec2")
    return while_propagating(lambda: ec2.run_instances(**request)["Instances"][0], INSTANCE_PROFILE_NOT_READY,
                             "instance profile", 90 if profile_changed else 0, echo)


class Watch:
    """An instance to its end: state changes, the job's log stream, the model's arrival."""

    def __init__(self, session, log_group: str, job: str, instance_id: str, model_uri: str, echo=print):
        self.ec2, self.logs, self.s3 = (session.client(s) for s in ("ec2", "logs", "s3"))
        self.group, self.stream = log_group, f"{job}/{instance_id}"
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
        """Poll until the instance is terminated (or stopped); over ``max_run_s`` (the instance's own cap and a
        grace) the CLI terminates it, a second line behind the cap."""
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


def _job(job: str, image: str, data: str, model_uri: str, hyperparameters: dict, instance_type: str,
         seconds: float, lines: list[str]) -> dict:
    """The run described as ``DescribeTrainingJob`` would, for ``runs.record_candidate``."""
    metrics = {}
    for line in lines:
        metrics.update(parse_metrics(line))
    return {"TrainingJobName": job, "TrainingJobStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in metrics.items()],
            "HyperParameters": hyperparameters, "AlgorithmSpecification": {"TrainingImage": image},
            "InputDataConfig": [{"DataSource": {"S3DataSource": {"S3Uri": data}}}],
            "ResourceConfig": {"InstanceCount": 1, "InstanceType": instance_type}, "EnableManagedSpotTraining": True,
            "BillableTimeInSeconds": round(seconds), "TrainingTimeInSeconds": round(seconds)}


def _run_locally(session, infrastructure: dict[str, str], instance: dict, interrupt_at: str | None,
                 root: Path) -> dict:
    """The local stack's instance: its user data (as the emulator stored it) run by a thread; the instance is
    terminated on the emulator, as one that shut itself down (``services/emulator/ec2_shutdown.py``), when the
    script ends (its shutdown) or its max-runtime cap powers it off.
    ``{"done", "noticed", "capped"}``."""
    from . import ec2_local

    ec2, iid = session.client("ec2"), instance["InstanceId"]
    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=iid, Attribute="userData")["UserData"]["Value"]).decode()
    imds = ec2_local.Imds(iid, infrastructure["Ec2RoleName"],
                          ec2_local.role_credentials(session, infrastructure["Ec2RoleArn"], iid))
    endpoint = ec2.meta.endpoint_url  # the emulator, however the session found it
    docker = os.environ.get("DOGOPS_EC2_DOCKER")
    env = ec2_local.instance_env(endpoint, imds, root / iid, docker=docker,
                                 train_on_host=None if docker else str(Path(sys.executable).parent / "train"),
                                 sync_s=int(os.environ.get("DOGOPS_SYNC_S", "60")))
    state = {"done": False, "noticed": False, "capped": False}

    def run():
        try:
            _, state["noticed"], state["capped"] = ec2_local.run_user_data(user_data, env, imds, interrupt_at)
        finally:  # the instance shut itself down (its script's end, or its cap): said so to the emulator
            ec2.create_tags(Resources=[iid], Tags=[{"Key": "dogops:shutdown", "Value": "instance-initiated"}])
            ec2.terminate_instances(InstanceIds=[iid])
            imds.close()
            state["done"] = True

    threading.Thread(target=run, daemon=True).start()
    return state


def train_on_ec2(args, stage: Stage, session, echo=print) -> dict:
    """``dogops promote train --ec2``: the training stack, instance(s) to the model, cost, candidate."""
    local = not getattr(args, "aws", False)
    conf = settings(stage.name, args.config)
    where = locations(conf, getattr(args, "data", None), getattr(args, "output", None))
    data, output = where.data, where.output
    job = getattr(args, "name", None) or \
        f"{stage.project}-{stage.name}-ec2-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    checkpoints = f"{where.checkpoints}/{job}"
    model_uri = f"{output}/{job}/output/model.tar.gz"
    instance_type = (getattr(args, "instance_type", None) or DEFAULT_INSTANCE_TYPE).removeprefix("ml.")
    subnet, ssh_from = getattr(args, "subnet", None), getattr(args, "ssh_from_my_ip", None)
    infrastructure = ensure(session, stage, where, args.image, conf.get("volume_gb", 30), echo,
                            Ec2Access(vpc_of(session, stage, subnet), ssh_from))
    made = infrastructure.outputs
    ami = getattr(args, "ami", None) or latest_ami(session)
    max_run_s = int(conf.get("max_run_s", 86400))
    echo(f"EC2 training {job}: {instance_type} spot, {ami}, launch template {made['LaunchTemplateId']} "
         f"v{made['LaunchTemplateVersion']}, security group {made['SecurityGroupId']} "
         f"({'SSH from ' + ssh_from if ssh_from else 'no inbound: aws ssm start-session'}), role {made['Ec2RoleArn']}")
    rehearsal = os.environ.get("DOGOPS_SPOT_INTERRUPT", "")
    interrupt_at = f"epoch={rehearsal.split('=', 1)[1]} " if local and rehearsal.startswith("epoch=") else None
    seconds, lines = 0.0, []
    with tempfile.TemporaryDirectory(prefix=f"dogops-ec2-{job}-") as tmp:
        for attempt in range(getattr(args, "max_interruptions", 3) + 1):
            cap_s = max_run_s - int(seconds)  # the job's runtime is capped, not each instance's: a relaunch gets the rest
            if cap_s <= 0:
                raise SystemExit(f"EC2 training {job}: its instances ran {seconds:.0f} s in all, the maximum runtime "
                                 f"({max_run_s} s, training.max_run_s); no model. Its checkpoints are in {checkpoints}")
            user_data = render_user_data(job, stage, args.image, data, checkpoints, output, conf["hyperparameters"],
                                         instance_type, made["LogGroupName"], cap_s)
            request = run_request(stage, job, made, ami, instance_type, user_data, subnet,
                                  getattr(args, "key_name", None))
            instance = launch(session, request, infrastructure.iam_changed, echo)
            echo(f"instance {instance['InstanceId']} launched (attempt {attempt + 1}, powers off after {cap_s} s)")
            began = time.monotonic()
            local_run = _run_locally(session, made, instance, interrupt_at if attempt == 0 else None,
                                     Path(tmp)) if local else {"done": True, "noticed": False, "capped": False}
            watch = Watch(session, made["LogGroupName"], job, instance["InstanceId"], model_uri, echo)
            ended = watch.until_ended(getattr(args, "poll", 5.0), cap_s + CLI_GRACE_S,
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
            if local_run["capped"] or seconds >= max_run_s:
                raise SystemExit(f"EC2 training {job}: the instance reached its maximum runtime ({max_run_s} s, "
                                 f"training.max_run_s) and powered itself off ({reason}); no model. Its checkpoints "
                                 f"are in {checkpoints}; see {made['LogGroupName']}")
            raise SystemExit(f"EC2 training {job} ended without a model ({reason}); see the log above and "
                             f"{made['LogGroupName']}")
        else:
            raise SystemExit(f"EC2 training {job}: interrupted more than {args.max_interruptions} times")
    echo(f"EC2 training {job}: Completed; model {model_uri}")
    for line in cost_lines(stage, instance_type, seconds, spot_price(session, instance_type)):
        echo(line)
    record = record_candidate(_job(job, args.image, data, model_uri, conf["hyperparameters"], instance_type,
                                   seconds, lines), stage, getattr(args, "candidate", None) or CANDIDATE)
    echo(f"recorded as the {stage.name} candidate")
    return record


def terminate_instances(stage: Stage, session) -> list[str]:
    """Terminate the stage's EC2 training instances that have not ended (for ``dogops destroy``, before the
    training stack goes: they use its security group and instance profile); their ids."""
    ec2 = session.client("ec2")
    filters = [{"Name": "tag:project", "Values": [stage.project]}, {"Name": "tag:stage", "Values": [stage.name]},
               {"Name": f"tag:{PATH_TAG['Key']}", "Values": [PATH_TAG["Value"]]},
               {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 60})
    return ids


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

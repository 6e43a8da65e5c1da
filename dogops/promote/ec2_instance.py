"""The S3, ECR, CloudWatch Logs and IMDS steps of the EC2 training instance, called by its user data
(``ec2_user_data.sh``, which carries this file): Python 3.9+ and boto3 only, nothing else of dogops.

    python3 ec2_instance.py login|download|sync|logs|notice|upload

Settings come from the environment the user data exports (``DOGOPS_*``); credentials and the region from the
instance profile through IMDSv2, as boto3 finds them on any instance.
"""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ENV = os.environ
ROOT = Path(ENV.get("DOGOPS_EC2_ROOT", "/opt/dogops"))
ML = ROOT / "ml"  # mounted at /opt/ml in the container
STATE = ROOT / "state"


def _uri(uri):
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def _client(service):
    import boto3  # here, not at the top: ``notice`` runs every second and needs only urllib

    return boto3.client(service, region_name=ENV["DOGOPS_REGION"])


def login():
    """``aws ecr get-login-password | docker login``: GetAuthorizationToken, the password to docker's stdin."""
    data = _client("ecr").get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    host = data["proxyEndpoint"].split("://", 1)[-1]
    docker = ENV.get("DOGOPS_DOCKER", "docker").split()
    subprocess.run([*docker, "login", "--username", user, "--password-stdin", host], input=password.encode(),
                   check=True, stdout=subprocess.DEVNULL)


def _download(s3, uri, dest):
    bucket, prefix = _uri(uri)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else ""):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):].lstrip("/")
            if not relative or item["Key"].endswith("/") or ".." in relative.split("/"):
                continue
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(dest / relative))
            count += 1
    return count


def download():
    """The data into ``ml/input/data/training``, the checkpoints into ``ml/checkpoints``, the config files."""
    s3 = _client("s3")
    data = _download(s3, ENV["DOGOPS_DATA"], ML / "input" / "data" / "training")
    restored = _download(s3, ENV["DOGOPS_CHECKPOINTS"], ML / "checkpoints")
    for sub in ("model", "output/data", "checkpoints", "input/config"):
        (ML / sub).mkdir(parents=True, exist_ok=True)
    kind = ENV["DOGOPS_INSTANCE_TYPE"]
    resource = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0",
                "current_instance_type": kind, "current_group_name": "homogeneousCluster",
                "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": kind,
                                     "hosts": ["algo-1"]}]}
    channels = {"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                             "RecordWrapperType": "None"}}
    for name, content in (("hyperparameters", json.loads(ENV["DOGOPS_HYPERPARAMETERS"])),
                          ("inputdataconfig", channels), ("resourceconfig", resource)):
        (ML / "input" / "config" / f"{name}.json").write_text(json.dumps(content, indent=2) + "\n")
    _synced(save={str(p): _stamp(p) for p in _checkpoints()})  # restored files need no upload
    print(f"dogops-ec2: {data} data files from {ENV['DOGOPS_DATA']}, {restored} checkpoint files restored from "
          f"{ENV['DOGOPS_CHECKPOINTS']}")


def _checkpoints():
    return [p for p in (ML / "checkpoints").rglob("*") if p.is_file() and not p.name.endswith(".tmp")]


def _stamp(path):
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _synced(save=None):
    path = STATE / "checkpoints.json"
    if save is not None:
        STATE.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(save))
        return save
    return json.loads(path.read_text()) if path.exists() else {}


def sync():
    """New and changed checkpoints to the checkpoint prefix, a deleted one deleted there (SageMaker's semantics)."""
    s3, (bucket, prefix) = _client("s3"), _uri(ENV["DOGOPS_CHECKPOINTS"])
    before, now = _synced(), {str(p): _stamp(p) for p in _checkpoints()}
    for path, stamp in now.items():
        if before.get(path) != stamp:
            s3.upload_file(path, bucket, "/".join(filter(None, [prefix, Path(path).relative_to(ML / "checkpoints")
                                                               .as_posix()])))
    for path in set(before) - set(now):
        s3.delete_object(Bucket=bucket, Key="/".join(filter(None, [prefix, Path(path).relative_to(
            ML / "checkpoints").as_posix()])))
    _synced(save=now)


def logs():
    """The job log's new lines to CloudWatch Logs (the stage's group, stream ``<job>/<instance id>``)."""
    log, offset_file = ROOT / "job.log", STATE / "log-offset"
    offset = int(offset_file.read_text()) if offset_file.exists() else 0
    if not log.exists():
        return
    with open(log, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[:chunk.rfind(b"\n") + 1]
    lines = [line for line in complete.decode("utf-8", "replace").split("\n")[:-1]]
    if lines:
        client, group = _client("logs"), ENV["DOGOPS_LOG_GROUP"]
        stream = f"{ENV['DOGOPS_JOB']}/{_instance_id()}"
        try:
            client.create_log_stream(logGroupName=group, logStreamName=stream)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
        now = int(time.time() * 1000)
        for start in range(0, len(lines), 5000):
            client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
                {"timestamp": now, "message": line or " "} for line in lines[start:start + 5000]])
    STATE.mkdir(parents=True, exist_ok=True)
    offset_file.write_text(str(offset + len(complete)))


def _imds(path):
    """GET ``/latest/<path>`` with an IMDSv2 session token (the template requires tokens); None on 404."""
    base = ENV.get("DOGOPS_IMDS_URL", "http://169.254.169.254")
    put = urllib.request.Request(f"{base}/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    token = urllib.request.urlopen(put, timeout=2).read().decode()
    try:
        request = urllib.request.Request(f"{base}/latest/{path}", headers={"X-aws-ec2-metadata-token": token})
        return urllib.request.urlopen(request, timeout=2).read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _instance_id():
    return _imds("meta-data/instance-id") or "unknown-instance"


def notice():
    """Exit 0 and print the action when IMDS has a spot interruption notice (``spot/instance-action``), else 1."""
    action = _imds("meta-data/spot/instance-action")
    if action is None:
        sys.exit(1)
    print(action)


def upload():
    """``state/model.tar.gz`` (packed by the training image's ``training.archive``) to ``<output>/<job>/output/``."""
    archive = STATE / "model.tar.gz"
    bucket, prefix = _uri(ENV["DOGOPS_OUTPUT"])
    key = "/".join(filter(None, [prefix, ENV["DOGOPS_JOB"], "output", "model.tar.gz"]))
    _client("s3").upload_file(str(archive), bucket, key)
    print(f"dogops-ec2: model uploaded to s3://{bucket}/{key}")


if __name__ == "__main__":
    steps = {f.__name__: f for f in (login, download, sync, logs, notice, upload)}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(steps)}")
    steps[sys.argv[1]]()

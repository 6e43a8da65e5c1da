"""Local SageMaker hosting: an endpoint created through boto3 on a real emulator (hosting left to a hoster outside, as
in compose) is served by the serving image (``services.hosting.endpoints``), reached through a real gateway's
InvokeEndpoint; an update rolls it; a new instance count adds and removes containers, each serving in turn; unhost
removes it.

The Docker tests need `dogops-serving:dev` and DOGOPS_TEST_IMAGES=1 (CI has both); the archive checks need neither.
"""

import io
import json
import os
import subprocess
import tarfile
import time

import boto3
import pytest
import requests

from services.hosting import containers
from services.hosting import endpoints as hosting
from services.security.sigv4 import RootAuth
from services.stack import settings

from ..conftest import tarball
from .processes import client, emulator, gateway, tar_gz

IMAGE = "dogops-serving:dev"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
TOPK = "application/vnd.dogops.topk+json"
TOKEN_MODEL = b"""import json
import uuid


def model_fn(model_dir):
    return uuid.uuid4().hex  # drawn once per server: which instance answered is seen, not assumed


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return model


def output_fn(prediction, accept):
    return json.dumps({"server": prediction})
"""
needs_docker = pytest.mark.skipif(os.environ.get("DOGOPS_TEST_IMAGES") != "1",
                                  reason="hosting runs the serving image: needs Docker and built images "
                                         "(DOGOPS_TEST_IMAGES=1, make test-images)")


def _archive(tmp_path, *members: tarfile.TarInfo) -> os.PathLike:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def test_extract_model_unpacks_the_sagemaker_layout(tmp_path):
    model = containers.extract_model(_archive(tmp_path, _file("./model.pth"), _file("./code/inference.py")),
                                  tmp_path / "model")
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")) == \
        ["code", "code/inference.py", "model.pth"]


@pytest.mark.parametrize("member", ["../escape", "/etc/passwd", "a/../../escape"])
def test_extract_model_refuses_paths_outside_the_model(tmp_path, member):
    with pytest.raises(containers.HostingError, match="outside"):
        containers.extract_model(_archive(tmp_path, _file(member)), tmp_path / "model")
    assert not (tmp_path / "escape").exists()


def test_extract_model_refuses_links_and_non_archives(tmp_path):
    link = tarfile.TarInfo("model.pth")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    with pytest.raises(containers.HostingError, match="is a link"):
        containers.extract_model(_archive(tmp_path, link), tmp_path / "model")
    (tmp_path / "plain.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(containers.HostingError, match="not a gzip"):
        containers.extract_model(tmp_path / "plain.tar.gz", tmp_path / "model")


def test_native_mode_unless_the_compose_gateway_runs(monkeypatch):
    monkeypatch.setenv("DOGOPS_HOSTING_NETWORK", "host")
    assert hosting.hosting_network() is None
    monkeypatch.setenv("DOGOPS_HOSTING_NETWORK", "dogops_default")
    assert hosting.hosting_network() == "dogops_default"


@pytest.fixture(scope="module")
def local(tmp_path_factory, trained):
    """An emulator leaving hosting to the tests (``host``) with two models in S3 and a gateway; yields (emulator URL,
    gateway URL)."""
    logs = tmp_path_factory.mktemp("hosting")
    server = emulator(logs, DOGOPS_HOSTING="host")
    gw = gateway(logs, server.url)
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket="models")
    for prefix in ("one", "two"):
        s3.put_object(Bucket="models", Key=f"{prefix}/model.tar.gz", Body=tarball(trained[0]))
    sagemaker = client("sagemaker", server.url)
    s3.put_object(Bucket="models", Key="token/model.tar.gz", Body=tar_gz({"code/inference.py": TOKEN_MODEL}))
    for prefix in ("one", "two", "token"):
        environment = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                       "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}  # one token per container
        sagemaker.create_model(ModelName=prefix, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": f"s3://models/{prefix}/model.tar.gz",
            **({"Environment": environment} if prefix == "token" else {})})
        sagemaker.create_endpoint_config(EndpointConfigName=prefix, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": prefix, "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
    yield server.url, gw.url
    gw.stop()
    server.stop()


@pytest.fixture
def session(local, monkeypatch, tmp_path):
    for key, value in {**settings.emulator_env(), "AWS_ENDPOINT_URL": local[0], "DOGOPS_HOSTING_NETWORK": "host",
                       "DOGOPS_HOSTING_DIR": str(tmp_path / "hosting"), "DOGOPS_HOSTING_TIMEOUT": "180"}.items():
        monkeypatch.setenv(key, value)
    return boto3.Session(region_name=settings.REGION)


def _containers(endpoint: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-a", "--filter", f"label=dogops.endpoint={endpoint}", "--format",
                           "{{.Names}}"], capture_output=True, text=True, check=True).stdout.split()


def _predict(gateway_url: str, endpoint: str, photo: bytes) -> str:
    runtime = client("sagemaker-runtime", gateway_url)
    answer = runtime.invoke_endpoint(EndpointName=endpoint, Body=photo, ContentType="image/jpeg", Accept=TOPK)
    return answer["Body"].read().decode()


@needs_docker
def test_an_endpoint_is_hosted_updated_and_unhosted(local, session, sample, tmp_path):
    emulator_url, gateway_url = local
    sagemaker = client("sagemaker", emulator_url)
    sagemaker.create_endpoint(EndpointName="hosted", EndpointConfigName="one")
    try:
        assert sagemaker.describe_endpoint(EndpointName="hosted")["EndpointStatus"] == "Creating"
        [first] = hosting.host_endpoint("hosted", session)
        assert _containers("hosted") == [first.container] and 0 < first.ready_s < 180
        assert requests.get(first.url + "/ping", timeout=5).status_code == 200
        assert '"004.Akita"' in _predict(gateway_url, "hosted", sample[0])
        routes = requests.get(f"{emulator_url}{settings.HOSTING_ROUTES}", timeout=5, auth=RootAuth()).json()["routes"]
        assert routes == [{"region": settings.REGION, "endpoint": "hosted", "url": first.route,
                           "container": first.container, "variants": {},  # every variant there
                           "instances": {"AllTraffic": [first.route]}}]
        assert sagemaker.describe_endpoint(EndpointName="hosted")["EndpointStatus"] == "InService"

        [again] = hosting.host_endpoint("hosted", session)  # nothing changed: the same container
        assert again.container == first.container and _containers("hosted") == [first.container]

        sagemaker.update_endpoint(EndpointName="hosted", EndpointConfigName="two")
        [second] = hosting.host_endpoint("hosted", session)
        assert second.container != first.container and _containers("hosted") == [second.container]
        assert not (tmp_path / "hosting" / first.container).exists()
        assert '"004.Akita"' in _predict(gateway_url, "hosted", sample[0])
    finally:
        hosting.unhost_endpoint("hosted", session)
        sagemaker.delete_endpoint(EndpointName="hosted")
    assert _containers("hosted") == [] and not list((tmp_path / "hosting").iterdir())
    assert requests.get(f"{emulator_url}{settings.HOSTING_ROUTES}/{settings.REGION}/hosted", timeout=5, auth=RootAuth()).status_code == 404


def _counts(sagemaker, endpoint: str) -> tuple[str, int, int]:
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    variant = described["ProductionVariants"][0]
    return described["EndpointStatus"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]


def _servers(gateway_url: str, endpoint: str, times: int) -> list[str]:
    runtime = client("sagemaker-runtime", gateway_url)
    return [json.loads(runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", ContentType="application/json",
                                               Accept="application/json")["Body"].read())["server"]
            for _ in range(times)]


@needs_docker
def test_a_new_instance_count_adds_and_removes_containers(local, session):
    """What the compose host runner does with an endpoint ``Updating`` to a new count, step by step."""
    emulator_url, gateway_url = local
    sagemaker = client("sagemaker", emulator_url)
    sagemaker.create_endpoint(EndpointName="scaled", EndpointConfigName="token")
    try:
        [first] = hosting.host_endpoint("scaled", session)
        assert _counts(sagemaker, "scaled") == ("InService", 1, 1)
        sagemaker.update_endpoint_weights_and_capacities(EndpointName="scaled", DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
        assert _counts(sagemaker, "scaled") == ("Updating", 1, 2)  # until the hoster routes two containers

        both = hosting.host_endpoint("scaled", session)
        assert [h.container for h in both][:1] == [first.container] and len(both) == 2
        assert sorted(_containers("scaled")) == sorted(h.container for h in both)
        assert _counts(sagemaker, "scaled") == ("InService", 2, 2)
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # the gateway's route cache
        served = _servers(gateway_url, "scaled", 8)
        assert len(set(served)) == 2 and served.count(served[0]) == 4  # round robin: each container in turn

        sagemaker.update_endpoint_weights_and_capacities(EndpointName="scaled", DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])
        [kept] = hosting.host_endpoint("scaled", session)  # the other one leaves the route, then stops
        assert kept.container == first.container and _containers("scaled") == [first.container]
        assert _counts(sagemaker, "scaled") == ("InService", 1, 1)
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)
        after = set(_servers(gateway_url, "scaled", 3))
        assert len(after) == 1 and after < set(served)  # the first container, serving all along
    finally:
        hosting.unhost_endpoint("scaled", session)
        sagemaker.delete_endpoint(EndpointName="scaled")
    assert _containers("scaled") == []


@needs_docker
def test_a_model_that_never_gets_healthy_fails_with_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("DOGOPS_HOSTING_TIMEOUT", "120")
    (tmp_path / "empty").mkdir()
    name = f"dogops-endpoint-broken-{os.getpid()}"
    with pytest.raises(containers.HostingError, match="exited; the end of its log") as failure:
        containers.run_model(IMAGE, tmp_path / "empty", name, env={"DOGOPS_HOSTING_TEST": "1"})
    assert "model" in str(failure.value).split("log:", 1)[1]
    assert subprocess.run(["docker", "ps", "-aq", "--filter", f"name={name}"], capture_output=True,
                          text=True).stdout.strip() == ""

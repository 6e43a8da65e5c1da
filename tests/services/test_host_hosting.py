"""Hosting left to a hoster outside the emulator (``DOGOPS_HOSTING=host``, compose): on a real emulator, an endpoint
created with boto3 is Creating until a hoster claims its config and registers a route naming it; one claim per
config wins; a failure fails a new endpoint and rolls an update back (the old route keeps serving); a delete frees
the claims, so the same name and config can be hosted again."""

import threading

import boto3
import pytest

from dogops import deploy
from services.hosting.containers import HostingError
from services.hosting.endpoints import _outcome, _post, claim, register_route
from services.stack import settings
from services.stack.settings import routes_url

from .processes import client, emulator

ROLE = "arn:aws:iam::123456789012:role/sagemaker"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = emulator(tmp_path_factory.mktemp("host-hosting"), DOGOPS_HOSTING="host")
    sm = client("sagemaker", process.url)
    for name in ("one", "two"):
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": "dogops-serving:dev", "ModelDataUrl": f"s3://models/{name}/model.tar.gz"})
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
    yield process
    process.stop()


def _status(server, name: str) -> tuple[str, str, str | None]:
    described = client("sagemaker", server.url).describe_endpoint(EndpointName=name)
    return described["EndpointStatus"], described["EndpointConfigName"], described.get("FailureReason")


def test_an_endpoint_is_creating_until_its_claimed_config_is_routed(server):
    sm = client("sagemaker", server.url)
    sm.create_endpoint(EndpointName="hosted", EndpointConfigName="one")
    url = routes_url(server.url, "us-east-1", "hosted")
    assert _status(server, "hosted") == ("Creating", "one", None)
    assert claim(url, "one") is True
    assert claim(url, "one") is False  # another hoster: the first keeps it
    register_route(url, "http://127.0.0.1:9", "c1", config="one")
    assert _status(server, "hosted") == ("InService", "one", None)

    sm.update_endpoint(EndpointName="hosted", EndpointConfigName="two")
    assert _status(server, "hosted")[0] == "Updating"
    with pytest.raises(HostingError, match="404"):  # a stale config is no longer the endpoint's
        claim(url, "one")
    assert claim(url, "two") is True
    _post(url, "failure", {"config": "two", "reason": "the model did not load"})
    assert _status(server, "hosted") == ("InService", "one", "the model did not load")  # rolled back

    sm.delete_endpoint(EndpointName="hosted")
    sm.create_endpoint(EndpointName="hosted", EndpointConfigName="one")
    assert claim(url, "one") is True  # a new endpoint: its claims start afresh
    _post(url, "failure", {"config": "one", "reason": "no model data"})
    assert _status(server, "hosted") == ("Failed", "one", "no model data")


def test_a_route_without_config_leaves_the_status_alone_and_bad_reports_are_refused(server):
    sm = client("sagemaker", server.url)
    sm.create_endpoint(EndpointName="plain", EndpointConfigName="one")
    url = routes_url(server.url, "us-east-1", "plain")
    register_route(url, "http://127.0.0.1:9")
    assert _status(server, "plain")[0] == "Creating"
    with pytest.raises(HostingError, match="400"):
        _post(url, "claim", {"nothing": "here"})
    with pytest.raises(HostingError, match="404"):
        _post(routes_url(server.url, "us-east-1", "nowhere"), "claim", {"config": "one"})


def test_a_hoster_that_lost_the_claim_gets_the_winners_outcome(server, monkeypatch):
    """``host_endpoint`` of a config another hoster claimed waits for the endpoint and answers its route (where
    the gateway sends it), or the failure the winner reported."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    session = boto3.Session(aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret(),
                            region_name="us-east-1")
    sm = client("sagemaker", server.url)
    for name, config in (("won", "one"), ("lost", "two")):
        sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
        assert claim(routes_url(server.url, "us-east-1", name), config)
    register_route(routes_url(server.url, "us-east-1", "won"), "http://127.0.0.1:9", "winner", config="one")
    _post(routes_url(server.url, "us-east-1", "lost"), "failure", {"config": "two", "reason": "no ping"})
    [hosted] = _outcome(session, "won", "one")
    assert (hosted.container, hosted.url) == ("winner", "http://127.0.0.1:9")
    with pytest.raises(HostingError, match="Failed no ping"):
        _outcome(session, "lost", "two")


def test_a_new_instance_count_is_updating_until_the_hoster_routes_that_many(server):
    """``UpdateEndpointWeightsAndCapacities`` in host mode: ``Updating`` with the desired count until the hoster
    registers the variant's instances; ``CurrentInstanceCount`` is how many it routed (fewer when one did not
    start)."""
    sm = client("sagemaker", server.url)
    sm.create_endpoint(EndpointName="counted", EndpointConfigName="one")
    url = routes_url(server.url, "us-east-1", "counted")
    assert claim(url, "one")
    register_route(url, "http://127.0.0.1:9", config="one", instances={"AllTraffic": ["http://127.0.0.1:9"]})
    variant = {"VariantName": "AllTraffic"}

    def counts():
        described = sm.describe_endpoint(EndpointName="counted")
        found = described["ProductionVariants"][0]
        return described["EndpointStatus"], found["CurrentInstanceCount"], found["DesiredInstanceCount"]

    assert counts() == ("InService", 1, 1)
    sm.update_endpoint_weights_and_capacities(EndpointName="counted", DesiredWeightsAndCapacities=[
        {**variant, "DesiredInstanceCount": 3}])
    assert counts() == ("Updating", 1, 3)
    register_route(url, "http://127.0.0.1:9", config="one",
                   instances={"AllTraffic": ["http://127.0.0.1:9", "http://127.0.0.1:10"]})  # the third did not start
    assert counts() == ("InService", 2, 3)
    sm.update_endpoint_weights_and_capacities(EndpointName="counted", DesiredWeightsAndCapacities=[
        {**variant, "DesiredInstanceCount": 1}])
    register_route(url, "http://127.0.0.1:9", config="one", instances={"AllTraffic": ["http://127.0.0.1:9"]})
    assert counts() == ("InService", 1, 1)
    sm.delete_endpoint(EndpointName="counted")


def test_an_endpoint_routed_by_hand_keeps_its_instances(server):
    """A route without instances (compose's own ``serving``, routed by its one-shot) has no hoster to add any: a new
    count stays desired, the endpoint in service on the one server."""
    sm = client("sagemaker", server.url)
    sm.create_endpoint(EndpointName="by-hand", EndpointConfigName="one")
    url = routes_url(server.url, "us-east-1", "by-hand")
    assert claim(url, "one")
    register_route(url, "http://127.0.0.1:9", config="one")
    sm.update_endpoint_weights_and_capacities(EndpointName="by-hand", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    described = sm.describe_endpoint(EndpointName="by-hand")
    found = described["ProductionVariants"][0]
    assert (described["EndpointStatus"], found["CurrentInstanceCount"], found["DesiredInstanceCount"]) == (
        "InService", 1, 2)
    sm.delete_endpoint(EndpointName="by-hand")


def test_an_endpoint_in_progress_refuses_an_update_and_deploy_waits_for_it(server):
    """SageMaker refuses UpdateEndpoint while the endpoint is Creating or Updating (moto rolled it); ``dogops
    deploy`` waits until the endpoint has settled, then updates it."""
    sm = client("sagemaker", server.url)
    sm.create_endpoint(EndpointName="busy", EndpointConfigName="one")
    with pytest.raises(sm.exceptions.ClientError) as refused:
        sm.update_endpoint(EndpointName="busy", EndpointConfigName="two")
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["Error"]["Message"] == (
        'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/busy".')
    assert _status(server, "busy") == ("Creating", "one", None)  # nothing changed

    url = routes_url(server.url, "us-east-1", "busy")
    hoster = threading.Timer(1.0, lambda: claim(url, "one") and register_route(url, "http://127.0.0.1:9", config="one"))
    hoster.start()
    described = deploy._settled(sm, "busy", sm.describe_endpoint(EndpointName="busy"), timeout_s=60, poll_s=0.2)
    hoster.join()
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "one")
    sm.update_endpoint(EndpointName="busy", EndpointConfigName="two")
    assert _status(server, "busy") == ("Updating", "two", None)
    with pytest.raises(sm.exceptions.ClientError, match="Cannot update in-progress endpoint"):
        sm.update_endpoint(EndpointName="busy", EndpointConfigName="one")
    sm.delete_endpoint(EndpointName="busy")

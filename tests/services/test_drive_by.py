"""What a web page could try against the stack on this machine, on real emulator and gateway processes (the
gateway's own routes and its proxy to the emulator): cross-site "simple" requests and preflights, DNS rebinding,
moto's ``/moto-api/``, the internal ``/_dogops/`` routes, ``text/plain`` to ``POST /predict``, and function URLs'
CORS. Every refusal is the guard's own (not a later one that a regression could hide), and nothing changes."""

import json
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import create_parser

from services.security.sigv4 import RootAuth
from services.stack import settings

from ..conftest import free_port
from . import processes

EVIL, APP = "http://evil.example", "https://app.example"
PREDICT, CORS_FN, PLAIN_FN = "drive-predict", "drive-cors", "drive-plain"
CREATE_USER = "Action=CreateUser&Version=2010-05-08&UserName=drive-by"
CORS = {"AllowOrigins": [APP], "AllowMethods": ["POST", "GET"], "AllowHeaders": ["content-type"], "MaxAge": 60}


def insider(emulator_url: str) -> Credentials:
    """An IAM user allowed everything, who is still not the stack's root."""
    iam = processes.client("iam", emulator_url)
    iam.create_user(UserName="insider")
    iam.put_user_policy(UserName="insider", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="insider")["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def function_source(record: Path) -> str:
    """A function that records each invocation (its name) and answers as an API Gateway proxy integration."""
    return f'''
def handler(event, context):
    with open({str(record)!r}, "a") as out:
        out.write(context.function_name + "\\n")
    return {{"statusCode": 200, "headers": {{"Content-Type": "application/json"}}, "body": '{{"ran": true}}'}}
'''


class Local:
    """The two processes, the invocation record, the function URLs, the insider and the state before."""

    def __init__(self, emulator, gateway, record: Path, urls: dict):
        self.emulator, self.gateway, self.record, self.urls = emulator, gateway, record, urls
        self.ports = {"emulator": emulator.url, "gateway": gateway.url}
        self.insider: Credentials | None = None
        self.before: dict = {}

    def runs(self, name: str) -> int:
        return self.record.read_text().split().count(name)

    def state(self) -> dict:
        """What a drive-by could change: buckets, users, roles, functions and their URLs."""
        url = self.emulator.url
        iam, lam = processes.client("iam", url), processes.client("lambda", url)
        functions = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
        return {"buckets": sorted(b["Name"] for b in processes.client("s3", url).list_buckets()["Buckets"]),
                "users": sorted(u["UserName"] for u in iam.list_users()["Users"]),
                "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"]),
                "functions": functions,
                "urls": {f: lam.list_function_url_configs(FunctionName=f)["FunctionUrlConfigs"] for f in functions}}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    logs = tmp_path_factory.mktemp("drive-by")
    record = logs / "invocations.txt"
    record.touch()
    port = free_port()
    emulator = processes.emulator(logs, DOGOPS_FUNCTION_URL_BASE=f"http://127.0.0.1:{port}")
    gateway = None
    try:
        gateway = processes.gateway(logs, emulator.url, port=port, DOGOPS_FUNCTION_NAME=PREDICT, DOGOPS_LOG_DIR=logs)
        for name in (PREDICT, CORS_FN, PLAIN_FN):
            processes.deploy_function(emulator.url, name, function_source(record))
        lam = processes.client("lambda", emulator.url)
        urls = {CORS_FN: lam.create_function_url_config(FunctionName=CORS_FN, AuthType="NONE", Cors=CORS),
                PLAIN_FN: lam.create_function_url_config(FunctionName=PLAIN_FN, AuthType="NONE")}
        processes.client("s3", emulator.url).create_bucket(Bucket="kept")
        local = Local(emulator, gateway, record, {name: config["FunctionUrl"] for name, config in urls.items()})
        local.insider = insider(emulator.url)
        local.before = local.state()
        yield local
    finally:
        if gateway:
            gateway.stop()
        emulator.stop()


ports = pytest.mark.parametrize("port", ["emulator", "gateway"])


def assert_guard_refused(answer: requests.Response, why: str, status: int = 403) -> None:
    """Refused by the guard itself (its JSON ``message``), with no CORS header at all."""
    assert answer.status_code == status, answer.text
    assert why in answer.json()["message"]
    assert not any(key.lower().startswith("access-control-") for key in answer.headers)


# (a) cross-site requests a page can send without a preflight, preflights, and pages that send no Origin.

SIMPLE = {"text": ("text/plain", "{}"), "form": ("application/x-www-form-urlencoded", CREATE_USER),
          "multipart": ("multipart/form-data; boundary=x",
                        "--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n")}
TARGETS = {"emulator /": ("emulator", "/"), "proxied /": ("gateway", "/"), "/predict": ("gateway", "/predict"),
           "Invoke": ("gateway", f"/2015-03-31/functions/{PREDICT}/invocations"),
           "InvokeEndpoint": ("gateway", "/endpoints/ep/invocations")}


@pytest.mark.parametrize("kind", SIMPLE)
@pytest.mark.parametrize("target", TARGETS)
def test_simple_requests_from_a_foreign_origin_are_refused(local, target, kind):
    port, path = TARGETS[target]
    content_type, body = SIMPLE[kind]
    runs = local.runs(PREDICT)
    answer = requests.post(local.ports[port] + path, data=body, timeout=30,
                           headers={"Origin": EVIL, "Content-Type": content_type})
    assert_guard_refused(answer, f"web origin '{EVIL}'")
    assert local.runs(PREDICT) == runs


@pytest.mark.parametrize("target", TARGETS)
def test_preflights_from_a_foreign_origin_are_refused(local, target):
    port, path = TARGETS[target]
    answer = requests.options(local.ports[port] + path, timeout=30, headers={
        "Origin": EVIL, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"})
    assert_guard_refused(answer, f"web origin '{EVIL}'")


@ports
@pytest.mark.parametrize("headers, why", [
    ({"Referer": f"{EVIL}/page.html"}, f"web origin '{EVIL}'"),
    ({"Origin": "null"}, "web origin 'null'"),  # a sandboxed frame, a file:// page
    ({"Sec-Fetch-Site": "cross-site"}, "cross-site requests are refused"),
    ({"Origin": "http://localhost:3000"}, "web origin 'http://localhost:3000'"),  # another local server's page
], ids=["referer", "null-origin", "sec-fetch-site", "other-local-port"])
def test_pages_without_a_foreign_origin_header_are_refused_too(local, port, headers, why):
    answer = requests.post(local.ports[port] + "/", data=CREATE_USER, timeout=30,
                           headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert_guard_refused(answer, why)


def test_the_demo_page_may_call_its_own_gateway(local):
    runs = local.runs(PREDICT)
    answer = requests.post(local.gateway.url + "/predict", json={"url": "x"}, timeout=60, headers={
        "Origin": local.gateway.url, "Referer": local.gateway.url + "/", "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 200 and answer.json() == {"ran": True}
    assert local.runs(PREDICT) == runs + 1 and "Access-Control-Allow-Origin" not in answer.headers


@ports
def test_same_origin_requests_pass_the_guard_and_carry_no_cors_headers(local, port):
    """moto answers every origin with ``Access-Control-Allow-Origin: *``: none of that reaches a browser."""
    url = local.ports[port]
    answer = requests.get(url + "/_dogops/health", headers={"Origin": url}, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    signed = processes.client("s3", url)
    seen = []
    signed.meta.events.register("after-call", lambda http_response, **_: seen.append(http_response.headers))
    assert signed.list_objects_v2(Bucket="kept")["KeyCount"] == 0  # (GET / is the gateway's demo page)
    options = requests.options(url + "/kept", headers={"Origin": url, "Access-Control-Request-Method": "PUT"},
                               timeout=30)
    for headers in [*seen, options.headers, answer.headers]:
        assert not any(key.lower().startswith("access-control-") for key in headers), headers


# (b) DNS rebinding: a name the attacker controls, resolving to 127.0.0.1.

@ports
@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "127.0.0.1.evil.example:5000",
                                  "localhost.evil.example", "[::1].evil.example"])
def test_a_foreign_host_is_refused(local, port, host):
    answer = requests.get(local.ports[port] + "/_dogops/health", headers={"Host": host}, timeout=30)
    assert_guard_refused(answer, "is not this stack's (DNS rebinding?)")


@ports
@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "gateway:8000",
                                  "emulator:5000", "localhost"])
def test_the_stacks_own_hosts_are_accepted(local, port, host):
    host = host.format(port=local.ports[port].rsplit(":", 1)[1])
    answer = requests.get(local.ports[port] + "/_dogops/health", headers={"Host": host}, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


# (c) moto's /moto-api/: reset, dashboard, state dump, recorder.

MOTO_API = [("GET", "/moto-api/"), ("POST", "/moto-api/reset"), ("GET", "/moto-api/data.json"),
            ("POST", "/moto-api/recorder/start-recording"), ("GET", "//moto-api/data.json")]


@ports
@pytest.mark.parametrize("method, path", MOTO_API)
def test_moto_api_is_off(local, port, method, path):
    answer = requests.request(method, local.ports[port] + path, timeout=30, allow_redirects=False)
    assert_guard_refused(answer, "moto's /moto-api/ is off", 404)
    assert "kept" in [b["Name"] for b in processes.client("s3", local.emulator.url).list_buckets()["Buckets"]]


def test_moto_api_answers_when_turned_on_but_not_to_foreign_pages(tmp_path):
    emulator = processes.emulator(tmp_path, DOGOPS_MOTO_API=1)
    try:
        processes.client("s3", emulator.url).create_bucket(Bucket="seen")
        answer = requests.get(emulator.url + "/moto-api/data.json", timeout=30)
        assert answer.status_code == 200 and '"seen"' in answer.text
        refused = requests.post(emulator.url + "/moto-api/reset", headers={"Origin": EVIL}, timeout=30)
        assert_guard_refused(refused, f"web origin '{EVIL}'")
        assert [b["Name"] for b in processes.client("s3", emulator.url).list_buckets()["Buckets"]] == ["seen"]
    finally:
        emulator.stop()


# (d) the internal routes: the root key only, on the emulator only.

INTERNAL = {  # path: (method, JSON body)
    "/_dogops/hosting": ("GET", None),
    "/_dogops/iam/authorize": ("POST", {"access_key_id": settings.ACCESS_KEY, "action": "iam:CreateUser",
                                        "resource": "*"}),
    "/_dogops/iam/secret": ("POST", {"access_key_id": settings.ACCESS_KEY}),
    f"/_dogops/lambda/{settings.REGION}/{PREDICT}/code": ("GET", None)}


def json_error(answer: requests.Response) -> tuple[int, str]:
    """A JSON service's error as botocore parses it."""
    parsed = create_parser("rest-json").parse(
        {"status_code": answer.status_code, "headers": answer.headers, "body": answer.content}, None)
    return answer.status_code, parsed["Error"]["Code"]




def signed_by(credentials: Credentials, method: str, url: str, body: bytes) -> requests.Response:
    aws = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "dogops", settings.REGION).add_auth(aws)
    return requests.request(method, url, data=body, headers=dict(aws.headers.items()), timeout=30)


def internal_calls(local, base: str, path: str) -> list[requests.Response]:
    """The route called unsigned, signed by the insider, signed with the root key."""
    method, query = INTERNAL[path]
    body = json.dumps(query).encode() if query else b""
    return [requests.request(method, base + path, data=body, timeout=30),
            signed_by(local.insider, method, base + path, body),
            requests.request(method, base + path, data=body, auth=RootAuth(), timeout=30)]


@pytest.mark.parametrize("path", INTERNAL)
def test_internal_routes_take_only_the_root_key(local, path):
    unsigned, insider, root = internal_calls(local, local.emulator.url, path)
    assert json_error(unsigned) == (403, "MissingAuthenticationTokenException")
    assert json_error(insider) == (403, "AccessDeniedException")
    assert root.status_code == 200


CODE = f"/_dogops/lambda/{settings.REGION}/{PREDICT}/code"


@pytest.mark.parametrize("path", [path for path in INTERNAL if path != CODE])
def test_internal_routes_are_not_proxied(local, path):
    for answer in internal_calls(local, local.gateway.url, path):
        assert answer.status_code == 404 and answer.json() == {"message": "not found"}


def test_a_functions_code_is_relayed_for_the_root_key_only(local):
    """The one internal route the gateway relays (GetFunction's Code.Location through the gateway names it): the
    emulator still takes only the root key's signature."""
    unsigned, insider, root = internal_calls(local, local.gateway.url, CODE)
    assert json_error(unsigned) == (403, "MissingAuthenticationTokenException")
    assert json_error(insider) == (403, "AccessDeniedException")
    assert root.status_code == 200 and root.content[:2] == b"PK"


# (e) POST /predict takes JSON or a photo: never a form or text a page could send cross-site unasked.

@pytest.mark.parametrize("kind", SIMPLE)
def test_predict_refuses_what_a_form_can_send(local, kind):
    content_type, body = SIMPLE[kind]
    runs = local.runs(PREDICT)
    answer = requests.post(local.gateway.url + "/predict", data=body, headers={"Content-Type": content_type},
                           timeout=30)
    assert answer.status_code == 415 and answer.json()["message"].startswith("Unsupported Media Type")
    assert local.runs(PREDICT) == runs


# (f) function URLs: the function's own CORS configuration decides.

def url_call(local, name: str, method: str = "POST", **headers) -> requests.Response:
    return requests.request(method, local.urls[name] + "path", data=b'{"a": 1}' if method == "POST" else None,
                            headers={"Content-Type": "application/json", **headers}, timeout=60)


def test_a_function_url_answers_an_origin_its_cors_allows(local):
    runs = local.runs(CORS_FN)
    answer = url_call(local, CORS_FN, Origin=APP)
    assert answer.status_code == 200 and answer.json() == {"ran": True}
    assert answer.headers["Access-Control-Allow-Origin"] == APP and local.runs(CORS_FN) == runs + 1
    preflight = url_call(local, CORS_FN, "OPTIONS", Origin=APP, **{"Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == APP
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST,GET"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"
    other = url_call(local, CORS_FN, "OPTIONS", Origin=APP, **{"Access-Control-Request-Method": "DELETE"})
    assert other.status_code == 403 and other.json() == {"Message": "Forbidden"}
    assert local.runs(CORS_FN) == runs + 1


FOREIGN = {"origin": {"Origin": EVIL}, "null": {"Origin": "null"}, "referer": {"Referer": f"{EVIL}/x"},
           "sec-fetch-site": {"Sec-Fetch-Site": "cross-site"}}
REFUSED = [(name, case) for name in (CORS_FN, PLAIN_FN) for case in FOREIGN] + [(PLAIN_FN, "app-without-cors")]


@pytest.mark.parametrize("name, case", REFUSED)
@pytest.mark.parametrize("method", ["POST", "OPTIONS"])
def test_a_function_url_refuses_other_origins(local, name, case, method):
    headers = dict(FOREIGN.get(case, {"Origin": APP}))
    if method == "OPTIONS":
        headers["Access-Control-Request-Method"] = "POST"
    runs = local.runs(name)
    answer = url_call(local, name, method, **headers)
    assert answer.status_code == 403 and answer.json() == {"Message": "Forbidden"}
    assert not any(key.lower().startswith("access-control-") for key in answer.headers)
    assert local.runs(name) == runs


@pytest.mark.parametrize("name", [CORS_FN, PLAIN_FN])
def test_a_function_url_without_a_page_behind_it_runs(local, name):
    runs = local.runs(name)
    answer = url_call(local, name)
    assert answer.status_code == 200 and answer.json() == {"ran": True} and local.runs(name) == runs + 1
    assert "Access-Control-Allow-Origin" not in answer.headers


@ports
def test_lambda_url_paths_off_the_gateways_function_urls_are_guarded(local, port):
    """``/lambda-url/`` is the function URLs' only on the gateway: elsewhere (an S3 bucket on the emulator, the
    proxy) it is guarded like any path."""
    answer = requests.put(local.ports[port] + "/lambda-url/", headers={"Origin": EVIL}, timeout=30)
    assert_guard_refused(answer, f"web origin '{EVIL}'")
    assert "lambda-url" not in local.state()["buckets"]


def test_nothing_changed(local):
    """Last: every hostile request above left the stack as it was."""
    assert local.state() == local.before

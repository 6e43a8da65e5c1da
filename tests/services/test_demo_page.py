"""The demo page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``), against a real gateway
and emulator: a sample photo by URL, an uploaded photo, and errors; the drawn bars checked in a screenshot; the
live panel's charts equal to what ``GetMetricData`` answers after that traffic, and its empty states.

The deployed function calls the stack's endpoint with boto3 as the real one does; a small HTTP server stands in for
the model server behind it, so the page's whole path (page → ``/predict`` → Lambda → ``InvokeEndpoint`` → proxy
answer → bars, and the metrics of each step) is exercised in seconds.
"""

import io
import json
import math
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from PIL import Image

from ..browser import (
    browser,  # noqa: F401 (a fixture)
    needs_chromium,
    wait,
)
from . import processes
from .test_sagemaker_runtime import create_endpoint

pytestmark = needs_chromium

BAR = (0x1F, 0x77, 0xB4)  # --bar in page.css
ENDPOINT, VARIANT = "demo-endpoint", "AllTraffic"
PANEL_COLOURS = ((0x2A, 0x9D, 0x8F), (0x8E, 0xCF, 0xC6), (0xD1, 0x49, 0x5B))  # --metric, -alt, -bad in page.css
FUNCTION = f'''
import base64
import json

import boto3

runtime = boto3.client("sagemaker-runtime")


def handler(event, context):
    request = json.loads(event["body"])
    if "image" in request:
        photo = base64.b64decode(request["image"])
        source = f"{{len(photo)}} bytes of " + ("JPEG" if photo[:2] == b"\\xff\\xd8" else "something else")
    else:
        source = request["url"]
    if "fail" in source:
        raise RuntimeError("the function failed")
    answer = runtime.invoke_endpoint(EndpointName="{ENDPOINT}", ContentType="application/json",
                                     Body=json.dumps({{"source": source}}))
    return {{"statusCode": 200, "headers": {{"Content-Type": "application/json"}},
            "body": json.dumps({{"endpoint": source, "predictions": json.loads(answer["Body"].read())}})}}
'''


class Model(processes.LoopbackServer):
    """The model server's stand-in: the top five as the real one answers them; 500 for a source naming
    ``model-error``."""

    BREEDS = ["Akita", "Beagle", "Borzoi", "Dalmatian", "Whippet"]
    PROBABILITIES = [0.62, 0.2, 0.1, 0.05, 0.03]

    def __init__(self):
        super().__init__(ModelHandler)


class ModelHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        source = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["source"]
        body = json.dumps([{"rank": rank, "breed": breed, "probability": p, "log_probability": math.log(p)}
                           for rank, (breed, p) in enumerate(zip(Model.BREEDS, Model.PROBABILITIES), 1)]).encode()
        self.send_response(500 if "model-error" in source else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (150, 100, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    logs, samples = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("samples")
    (samples / "dog.jpg").write_bytes(jpeg(120, 90))
    for number in range(1, 25):  # the real set's long file names: the row must wrap inside the card
        (samples / f"American_water_spaniel_{number:05d}.jpg").write_bytes(jpeg(60, 45))
    emulator = processes.emulator(logs)
    create_endpoint(emulator.url, ENDPOINT, VARIANT)
    model = Model()
    processes.route(emulator.url, ENDPOINT, model.url)
    processes.deploy_function(emulator.url, "demo-page", FUNCTION)
    processes.client("iam", emulator.url).put_role_policy(  # the function's role may call the endpoint
        RoleName="test-function", PolicyName="invoke", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": "*"}]}))
    proc = processes.gateway(logs, emulator.url, DOGOPS_FUNCTION_NAME="demo-page", DOGOPS_ENDPOINT_NAME=ENDPOINT,
                             DOGOPS_SAMPLES_DIR=samples, DOGOPS_LOG_DIR=logs)
    proc.emulator_url = emulator.url
    yield proc
    proc.stop()
    model.shutdown()
    emulator.stop()


@pytest.fixture
def page(browser, gateway):  # noqa: F811 (browser: the fixture)
    browser.get(gateway.url + "/")
    return browser


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def bar_pixels(driver, path: Path) -> int:
    """Save a screenshot at ``path``; count its pixels of the bars' colour."""
    assert driver.save_screenshot(str(path))
    image = Image.open(path).convert("RGB")
    return sum(count for count, colour in image.getcolors(1 << 24) if colour == BAR)


def predict(driver) -> None:
    driver.find_element("id", "submit").click()
    wait(driver, lambda d: text(d, "status").startswith("answered") or d.find_element("id", "error").is_displayed())


def test_a_sample_url_gives_five_bars(page, gateway, tmp_path):
    assert page.title == "dogops: which breed?"
    assert bar_pixels(page, tmp_path / "before.png") == 0
    wait(page, lambda d: d.find_element("id", "samples").is_displayed())
    page.find_element("link text", "dog.jpg").click()
    url = gateway.url + "/samples/dog.jpg"
    assert page.find_element("id", "url").get_attribute("value") == url
    predict(page)
    assert text(page, "status").endswith(f"by endpoint {url}")
    rows = [row.text.splitlines() for row in page.find_elements("css selector", "#chart li")]
    assert rows == [["1. Akita", "62.0 %"], ["2. Beagle", "20.0 %"], ["3. Borzoi", "10.0 %"],
                    ["4. Dalmatian", "5.0 %"], ["5. Whippet", "3.0 %"]]
    widths = [bar.size["width"] for bar in page.find_elements("css selector", "#chart .bar")]
    assert widths == sorted(widths, reverse=True) and widths[0] > 5 * widths[3]
    assert page.execute_script("return document.getElementById('preview').naturalWidth") == 120
    # 22 px high bars over a chart some 500 px wide: thousands of pixels of exactly the bars' colour
    assert bar_pixels(page, tmp_path / "demo-page.png") > 5000


def test_the_samples_wrap_inside_the_card_at_1280_px(page):
    page.set_window_size(1280, 900)
    wait(page, lambda d: d.find_element("id", "samples").is_displayed())
    card = page.execute_script("return document.querySelector('main').getBoundingClientRect().right")
    links = page.execute_script("return Math.max(...[...document.querySelectorAll('#sample-links a')]"
                                ".map(a => a.getBoundingClientRect().right))")
    assert links <= card
    assert page.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_an_uploaded_photo_is_sent_as_base64(page, tmp_path):
    photo = tmp_path / "upload.jpg"
    photo.write_bytes(jpeg(640, 480))
    page.find_element("id", "file").send_keys(str(photo))
    predict(page)
    assert text(page, "status").endswith(f"by endpoint {photo.stat().st_size} bytes of JPEG")
    assert len(page.find_elements("css selector", "#chart li")) == 5


def test_a_function_error_is_shown(page):
    page.find_element("id", "url").send_keys("http://127.0.0.1/fail.jpg")
    predict(page)
    assert text(page, "error") == "502: Internal server error"
    assert not page.find_element("id", "result").is_displayed()


def test_nothing_chosen_is_an_error_on_the_page(page):
    predict(page)
    assert text(page, "error") == "choose a photo or paste a URL"


def test_a_photo_over_the_functions_limit_is_refused_on_the_page(page, tmp_path):
    photo = tmp_path / "huge.jpg"
    photo.write_bytes(b"\xff\xd8" + b"\0" * 4_500_000)
    page.find_element("id", "file").send_keys(str(photo))
    predict(page)
    assert text(page, "error") == "the photo is over 4.5 MB"


def _metric_data(cloudwatch, namespace: str, dims: dict, queries: dict) -> dict[str, dict[datetime, float]]:
    """What GetMetricData answers for the last 15 minutes, per minute: {id: {minute: value}}."""
    last = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    answer = cloudwatch.get_metric_data(
        StartTime=last - timedelta(minutes=14), EndTime=last + timedelta(minutes=1),
        MetricDataQueries=[{"Id": key, "MetricStat": {"Metric": {
            "Namespace": namespace, "MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": 60, "Stat": stat}} for key, (name, stat) in queries.items()])
    return {r["Id"]: dict(zip(r["Timestamps"], r["Values"])) for r in answer["MetricDataResults"]}


def expected_panel(emulator_url: str) -> dict[str, dict[datetime, float]]:
    """The panel's series as CloudWatch has them, keyed like the page's charts (``data-metric`` + bar series)."""
    cloudwatch = processes.client("cloudwatch", emulator_url)
    sm = _metric_data(cloudwatch, "AWS/SageMaker", {"EndpointName": ENDPOINT, "VariantName": VARIANT}, {
        "n": ("Invocations", "Sum"), "p50": ("ModelLatency", "p50"), "p99": ("ModelLatency", "p99"),
        "e4": ("Invocation4XXErrors", "Sum"), "e5": ("Invocation5XXErrors", "Sum")})
    fn = _metric_data(cloudwatch, "AWS/Lambda", {"FunctionName": "demo-page"}, {
        "n": ("Invocations", "Sum"), "p50": ("Duration", "p50"), "p99": ("Duration", "p99"),
        "errors": ("Errors", "Sum"), "throttles": ("Throttles", "Sum")})
    endpoint = f"endpoint.{VARIANT}"
    return {
        f"{endpoint}.invocations invocations": sm["n"],
        f"{endpoint}.p50_ms p50_ms": {t: v / 1000 for t, v in sm["p50"].items()},
        f"{endpoint}.p50_ms p99_ms": {t: v / 1000 for t, v in sm["p99"].items()},
        f"{endpoint}.errors errors": {t: sm["e4"].get(t, 0) + sm["e5"].get(t, 0) for t in {**sm["e4"], **sm["e5"]}},
        f"{endpoint}.instances instances": {t: 1.0 for t in sm["n"]},  # one model server behind the variant
        "function.invocations invocations": fn["n"], "function.p50_ms p50_ms": fn["p50"],
        "function.p50_ms p99_ms": fn["p99"], "function.errors errors": fn["errors"],
        "function.throttles throttles": fn["throttles"]}


def drawn_panel(driver) -> tuple[dict[str, dict[datetime, float]], dict[str, str]]:
    """The panel as drawn, read at once (it is redrawn every 10 s): its bars, {chart and series: {minute: value}},
    and each chart's value text, {chart: text}."""
    bars, values = driver.execute_script(
        "const charts = [...document.querySelectorAll('#panel .metric')];"
        "return [charts.flatMap(c => [...c.querySelectorAll('rect')].map(r => [c.dataset.metric + ' ' + r.dataset.series,"
        " r.dataset.minute, r.dataset.value])), Object.fromEntries(charts.map(c => [c.dataset.metric,"
        " c.querySelector('.value').textContent]))]")
    drawn: dict[str, dict[datetime, float]] = {}
    for key, minute, value in bars:
        drawn.setdefault(key, {})[datetime.fromisoformat(minute.replace("Z", "+00:00"))] = float(value)
    return drawn, values


def same(drawn: dict, expected: dict) -> bool:
    expected = {key: series for key, series in expected.items() if series}
    return drawn.keys() == expected.keys() and all(
        drawn[k].keys() == expected[k].keys() and all(math.isclose(drawn[k][t], v, abs_tol=1e-3)
                                                      for t, v in expected[k].items()) for k in expected)


def test_the_panel_draws_the_metrics_of_the_traffic(page, gateway, tmp_path):
    sample = gateway.url + "/samples/dog.jpg"
    for url in (sample, sample, sample, "http://127.0.0.1/model-error.jpg", "http://127.0.0.1/fail.jpg"):
        page.find_element("id", "url").clear()
        page.find_element("id", "url").send_keys(url)
        predict(page)
    lam = processes.client("lambda", gateway.emulator_url)
    lam.put_function_concurrency(FunctionName="demo-page", ReservedConcurrentExecutions=0)
    try:
        deadline = time.monotonic() + 30  # the gateway reads a function's configuration again after 1 s
        while text(page, "error") != "429: Too Many Requests" and time.monotonic() < deadline:
            time.sleep(1.2)
            predict(page)
        assert text(page, "error") == "429: Too Many Requests"
    finally:
        lam.delete_function_concurrency(FunctionName="demo-page")

    # once CloudWatch has the throttle (the stack sends its metrics every second), the panel, which refreshes after
    # each prediction and every 10 s, draws what CloudWatch has
    wait(page, lambda d: expected_panel(gateway.emulator_url)["function.throttles throttles"], timeout=20)
    wait(page, lambda d: same(drawn_panel(d)[0], expected_panel(gateway.emulator_url)), timeout=30)
    drawn, values = drawn_panel(page)
    assert sum(drawn["function.invocations invocations"].values()) >= 5  # this test's; the module's earlier tests'
    assert sum(drawn["function.errors errors"].values()) >= 2  # fail.jpg, and model-error.jpg's ModelError
    assert sum(drawn["function.throttles throttles"].values()) >= 1
    assert sum(drawn[f"endpoint.{VARIANT}.errors errors"].values()) >= 1  # model-error.jpg's 500
    assert sum(drawn[f"endpoint.{VARIANT}.invocations invocations"].values()) >= 4
    assert values[f"endpoint.{VARIANT}.invocations"] == f"{sum(drawn[f'endpoint.{VARIANT}.invocations invocations'].values()):g}"
    assert values[f"endpoint.{VARIANT}.instances"] == "1"
    assert not page.find_element("id", "panel-empty").is_displayed()

    panel = page.find_element("id", "panel")
    page.execute_script("arguments[0].scrollIntoView()", panel)
    shot = tmp_path / "panel.png"
    assert panel.screenshot(str(shot))
    colours = dict((colour, count) for count, colour in Image.open(shot).convert("RGB").getcolors(1 << 24))
    assert colours.get(PANEL_COLOURS[0], 0) > 200  # the invocation and latency bars
    assert colours.get(PANEL_COLOURS[2], 0) > 20  # errors and throttles


def test_the_panel_is_empty_without_metrics_and_asks_for_the_api_key(browser, gateway, tmp_path):  # noqa: F811
    """A gateway whose emulator is away and that wants an API key: an empty state each time, never an error."""
    away = processes.gateway(tmp_path, f"http://127.0.0.1:{processes.free_port()}", DOGOPS_API_KEY="sesame",
                             DOGOPS_ENDPOINT_NAME="nowhere", DOGOPS_LOG_DIR=tmp_path)
    try:
        browser.get(away.url + "/")
        wait(browser, lambda d: "API key" in text(d, "panel-empty"))
        assert text(browser, "panel-empty") == "No metrics to show: the gateway asks for its API key (above)"
        browser.find_element("id", "key").send_keys("sesame")
        browser.execute_script("refreshPanel()")
        wait(browser, lambda d: "metrics not available" in text(d, "panel-groups"))
        assert text(browser, "panel-empty") == "No metrics in the last 15 minutes: send a photo."
        assert browser.find_elements("css selector", "#panel rect") == []
        assert text(browser, "error") == ""
    finally:
        away.stop()


def test_the_panel_is_same_origin_only(gateway):
    assert requests.get(gateway.url + "/page/metrics", headers={"Origin": "http://evil.example"},
                        timeout=10).status_code == 403
    answer = requests.get(gateway.url + "/page/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert len(answer.json()["minutes"]) == 15 and "access-control-allow-origin" not in answer.headers

"""The demo page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``), against a real gateway
and emulator: a sample photo by URL, an uploaded photo, and errors; the drawn bars checked in a screenshot.

The deployed function answers as the real one does, without a model behind it, so the page's
whole path (page → ``/predict`` → Lambda → proxy answer → bars) is exercised in seconds.
"""

import io
from pathlib import Path

import pytest
from PIL import Image

from ..browser import (
    browser,  # noqa: F401 (a fixture)
    needs_chromium,
    wait,
)
from . import processes

pytestmark = needs_chromium

BAR = (0x1F, 0x77, 0xB4)  # --bar in page.css
FUNCTION = '''
import base64
import json
import math

BREEDS = ["Akita", "Beagle", "Borzoi", "Dalmatian", "Whippet"]
PROBABILITIES = [0.62, 0.2, 0.1, 0.05, 0.03]


def handler(event, context):
    request = json.loads(event["body"])
    if "image" in request:
        photo = base64.b64decode(request["image"])
        source = f"{len(photo)} bytes of " + ("JPEG" if photo[:2] == b"\\xff\\xd8" else "something else")
    else:
        source = request["url"]
    if "fail" in source:
        raise RuntimeError("the function failed")
    predictions = [{"rank": rank, "breed": breed, "probability": p, "log_probability": math.log(p)}
                   for rank, (breed, p) in enumerate(zip(BREEDS, PROBABILITIES), 1)]
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"endpoint": source, "predictions": predictions})}
'''


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
    processes.deploy_function(emulator.url, "demo-page", FUNCTION)
    proc = processes.gateway(logs, emulator.url, DOGOPS_FUNCTION_NAME="demo-page", DOGOPS_SAMPLES_DIR=samples,
                             DOGOPS_LOG_DIR=logs)
    yield proc
    proc.stop()
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

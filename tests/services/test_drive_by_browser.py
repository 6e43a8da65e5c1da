"""A drive-by in a real browser (headless Debian Chromium): a page on another origin of this machine tries what a
hostile web page would against a running stack (the emulator and the gateway): cross-site ``POST /predict``
(``text/plain`` and JSON), an S3 bucket and IAM users created with ``fetch`` (directly and through the gateway's
relay) and with a submitted form, moto's reset. All are
refused before anything runs; the stack's state is the same afterwards."""

import json
import re
from http.server import BaseHTTPRequestHandler

import pytest

from ..browser import (
    browser,  # noqa: F401 (a fixture)
    needs_chromium,
    wait,
)
from . import processes
from .test_demo_page import FUNCTION

pytestmark = needs_chromium

ATTACK = """<!doctype html><title>loading</title>
<form id="form" method="POST" action="{emulator}/?Action=CreateUser&Version=2010-05-08&UserName=driven-by-form"
      target="sink"><input name="UserName" value="driven-by-form"></form>
<iframe name="sink"></iframe>
<script>
const results = {{}};
async function attempt(name, url, init) {{
  try {{ const r = await fetch(url, init); results[name] = r.type === "opaque" ? "opaque" : r.status; }}
  catch (e) {{ results[name] = "blocked"; }}
}}
(async () => {{
  await attempt("predict-text", "{gateway}/predict", {{method: "POST", mode: "no-cors",
    headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{url: "https://evil.example/drive-by"}})}});
  await attempt("predict-json", "{gateway}/predict", {{method: "POST",
    headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{url: "https://evil.example/drive-by"}})}});
  await attempt("bucket", "{emulator}/driven-by-fetch", {{method: "POST", mode: "no-cors"}});
  await attempt("proxied-user", "{gateway}/?Action=CreateUser&Version=2010-05-08&UserName=driven-by-proxy",
                {{method: "POST", mode: "no-cors"}});
  await attempt("moto-reset", "{emulator}/moto-api/reset", {{method: "POST", mode: "no-cors"}});
  document.getElementById("form").submit();
  await new Promise(resolve => setTimeout(resolve, 1000));
  document.title = "done " + JSON.stringify(results);
}})();
</script>"""


class Attacker(processes.LoopbackServer):
    """Serves the hostile page on its own origin (another port of 127.0.0.1)."""

    def __init__(self, page: str):
        self.page = page.encode()
        super().__init__(AttackerHandler)


class AttackerHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    emulator = processes.emulator(logs)
    processes.deploy_function(emulator.url, "demo-page", FUNCTION)
    processes.client("s3", emulator.url).create_bucket(Bucket="kept")
    gateway = processes.gateway(logs, emulator.url, DOGOPS_FUNCTION_NAME="demo-page", DOGOPS_LOG_DIR=logs)
    yield emulator, gateway
    gateway.stop()
    emulator.stop()


def _state(emulator) -> tuple:
    return (sorted(b["Name"] for b in processes.client("s3", emulator.url).list_buckets()["Buckets"]),
            sorted(u["UserName"] for u in processes.client("iam", emulator.url).list_users()["Users"]))


def test_a_hostile_page_changes_nothing(stack, browser):  # noqa: F811 (browser: the fixture)
    emulator, gateway = stack
    before = _state(emulator)
    attacker = Attacker(ATTACK.format(emulator=emulator.url, gateway=gateway.url))
    try:
        browser.get(attacker.url + "/")
        wait(browser, lambda d: d.title.startswith("done"), timeout=60)
        results = json.loads(browser.title[len("done "):])
    finally:
        attacker.shutdown()
    assert results["predict-json"] == "blocked"  # its preflight is refused: the browser never sends the POST
    assert _state(emulator) == before == (["kept"], [])
    # What the browser did send was refused by the guard (403; moto's API: 404), before the function or moto ran.
    for proc, paths in ((gateway, ("/predict", "/?Action=CreateUser")),
                        (emulator, ("/driven-by-fetch", "/moto-api/reset", "/?Action=CreateUser"))):
        answered = re.findall(r'"(?:\x1b\[[\d;]*m)*(?:POST|OPTIONS) (/\S*) HTTP/1.1(?:\x1b\[0m)?" (\d+)',
                              proc.log.read_text())
        sent = [(path, status) for path, status in answered if path.startswith(paths)]
        assert sent and all(status in ("403", "404") for _, status in sent), sent

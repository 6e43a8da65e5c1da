"""What the README tells a user to run against the local stack, run verbatim, and the demo page in a real browser:
the same answers in either mode (``STACK=native`` or ``STACK=compose``)."""

import os
import re
import subprocess

from tests.browser import (
    browser,  # noqa: F401 (a fixture)
    needs_chromium,
    wait,
)

from .stacks import BIN, GATEWAY, ROOT

RANKED = re.compile(r"^\s*[1-5]\. ", re.M)


def readme_commands() -> list[str]:
    """The local-stack section's commands for a running stack: ``eval "$(dogops env)"``, invoking the function by
    the samples URL it exports, ``dogops status``; as written, comments aside."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## The local stack", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith(("eval ", "dogops invoke --url ", "dogops status"))]


def test_the_readme_commands_work_as_written(stack):
    commands = readme_commands()
    assert [c.split()[:2] for c in commands] == [["eval", '"$(dogops'], ["dogops", "invoke"], ["dogops", "status"]]
    user = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp"),  # no AWS settings: only
            **{k: v for k, v in os.environ.items() if k.endswith("_PORT") or k == "DOGOPS_STATE_DIR"}}  # where it is
    result = subprocess.run(["bash", "-euc", "\n".join(commands)], cwd=ROOT, env=user, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(RANKED.findall(result.stdout)) == 5, result.stdout
    assert result.stdout.count(" healthy") == 3, result.stdout


@needs_chromium
def test_the_page_previews_and_classifies_a_sample(stack, stack_env, browser):  # noqa: F811 (browser: the fixture)
    browser.get(GATEWAY + "/")
    wait(browser, lambda d: d.find_element("id", "samples").is_displayed())
    browser.find_element("link text", "dog.jpg").click()
    assert browser.find_element("id", "url").get_attribute("value") == stack_env["DOGOPS_SAMPLES_URL"] + "/dog.jpg"
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: d.find_element("id", "status").text.startswith("answered")
         or d.find_element("id", "error").is_displayed(), timeout=120)
    assert browser.find_element("id", "status").text.startswith("answered"), browser.find_element("id", "error").text
    assert len(browser.find_elements("css selector", "#chart li")) == 5
    assert browser.execute_script("return document.getElementById('preview').naturalWidth") > 0  # it loaded
    # the panel draws this stack's endpoint and function from their CloudWatch metrics
    charts = "#panel .metric[data-metric='{}'] rect"
    wait(browser, lambda d: d.find_elements("css selector", charts.format("function.invocations"))
         and d.find_elements("css selector", charts.format("endpoint.AllTraffic.invocations")), timeout=60)
    instances = browser.execute_script(
        "return document.querySelector(\"#panel .metric[data-metric='endpoint.AllTraffic.instances'] .value\")"
        ".textContent")
    assert instances.isdigit() and int(instances) >= 1, instances

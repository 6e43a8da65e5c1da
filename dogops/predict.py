"""``dogops predict``: send an image to a serving container and print the top breeds."""

import json
import time
from pathlib import Path

import requests

TOPK = "application/vnd.dogops.topk+json"


def wait_healthy(endpoint: str, timeout: float) -> None:
    """Poll ``/ping`` until it answers 200, as SageMaker does before routing traffic."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{endpoint}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{endpoint}/ping did not answer 200 within {timeout:g} s")
        time.sleep(0.5)


def predict(endpoint: str, image: str, top_k: int = 5) -> list[dict]:
    """Top-k breeds for a local image file or an http(s) URL (fetched by the server)."""
    if image.startswith(("http://", "https://")):
        body, content_type = json.dumps({"url": image}).encode(), "application/json"
    else:
        body, content_type = Path(image).read_bytes(), "application/x-image"
    response = requests.post(f"{endpoint}/invocations", data=body, timeout=70, headers={
        "Content-Type": content_type, "Accept": TOPK, "X-Amzn-SageMaker-Custom-Attributes": f"top_k={top_k}"})
    if response.status_code != 200:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise RuntimeError(f"the server answered {response.status_code}: {message}")
    return response.json()["predictions"]


def print_predictions(predictions: list[dict]) -> None:
    for p in predictions:
        print(f"{p['rank']:>2}. {p['breed']:<36} {p['probability']:8.2%}")

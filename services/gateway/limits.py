"""The gateway's admission bounds (``services.security.admission``): how many requests of each class it works on
at once, and which class a request is in."""

import os

LAMBDA = "/2015-03-31/functions/"
INVOCATIONS = ("/lambda-url/", "/predict")  # with Lambda's Invoke: the requests that wait on a function


def bounds() -> dict[str, int]:
    """How many requests of each class the gateway works on at once: Lambda invocations
    (``DOGOPS_GATEWAY_MAX_INVOCATIONS``, 32) apart from everything else (``DOGOPS_GATEWAY_MAX_REQUESTS``, 24), so
    the calls a function makes back through the gateway always find room."""
    return {"invocations": int(os.environ.get("DOGOPS_GATEWAY_MAX_INVOCATIONS") or 32),
            "requests": int(os.environ.get("DOGOPS_GATEWAY_MAX_REQUESTS") or 24)}


def request_class(environ) -> str | None:
    """A request's admission class (``bounds``); the stack's own ``/_dogops/`` paths are not counted."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/_dogops/"):
        return None
    invoke = path.startswith(LAMBDA) and path.endswith("/invocations")
    return "invocations" if invoke or path.startswith(INVOCATIONS) else "requests"

"""``python -m services.gateway [--host H] [--port P]``: the gateway under gunicorn.

One worker process with threads: a Lambda function's reserved concurrency and its
warm workers must be counted in one place, as the Lambda service does.

Threads: the admission bounds (``limits.bounds``) plus ``SPARE`` for throttling answers and health probes
(``DOGOPS_GATEWAY_THREADS`` sets them); at most ``DOGOPS_GATEWAY_MAX_CONNECTIONS`` (1000) open connections
(gunicorn's ``--worker-connections``), the next ones wait in the listen backlog.
"""

import argparse
import os
import sys

from gunicorn.app.wsgiapp import run

from ..stack import settings
from .limits import bounds

SPARE = 8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("DOGOPS_GATEWAY_THREADS") or sum(bounds().values()) + SPARE))
    args = parser.parse_args(argv)
    sys.argv = ["gunicorn", "--bind", f"{args.host}:{args.port}", "--workers", "1", "--worker-class", "gthread",
                "--threads", str(args.threads), "--worker-connections",
                os.environ.get("DOGOPS_GATEWAY_MAX_CONNECTIONS") or "1000", "--timeout", "120", "--graceful-timeout", "10",
                "--access-logfile", "-", "--no-control-socket", "services.gateway.app:create_app()"]
    run()


if __name__ == "__main__":
    main()

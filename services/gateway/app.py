"""The gateway's Flask application: SageMaker Runtime, Lambda ``Invoke``, function URLs, the API route and the
demo page.

Run it with ``python -m services.gateway`` (gunicorn, one process with threads:
the Lambda concurrency counters and warm function workers live in it).
"""

from flask import Flask

from ..security.admission import Admission
from ..security.guard import Guard
from . import apigw, emulator_proxy, function_url, lambda_api, lambda_runtime, panel, sagemaker_runtime, signatures
from .limits import bounds, request_class


def create_app() -> Flask:
    """The gateway, configured from the environment (see ``services.stack``), behind the stack's guard (Host, web
    origins) with every signed request verified (``signatures``), working on at most ``limits.bounds()`` requests at once
    (the rest answered with the called service's throttling error, ``services.security.admission``)."""
    app = Flask(__name__)
    app.wsgi_app = Admission(Guard(app.wsgi_app), bounds(), request_class)
    app.before_request(signatures.verify_request)
    app.register_blueprint(sagemaker_runtime.blueprint)
    app.register_blueprint(lambda_api.blueprint)
    app.register_blueprint(function_url.blueprint)
    app.register_blueprint(apigw.blueprint)
    app.register_blueprint(panel.blueprint)
    app.add_url_rule("/_dogops/health", "health", lambda: {"status": "ok"})
    app.add_url_rule("/_dogops/lambda/mismatches", "lambda_mismatches", lambda: {"mismatches": lambda_runtime.mismatches()})
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]
    app.add_url_rule("/", "emulator_root", emulator_proxy.forward, methods=[m for m in methods if m != "GET"])
    app.add_url_rule("/<path:path>", "emulator", emulator_proxy.forward, methods=methods)
    return app

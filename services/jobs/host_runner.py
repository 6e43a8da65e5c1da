"""The compose stack's runner, on the host: what the emulator's container cannot do itself (it has neither Docker
nor torch), done with this machine's Docker engine, as SageMaker's own local mode drives Docker from the host.

    python -m services.jobs.host_runner       (make up-compose starts it; make down-compose stops it)

Every second it asks the emulator (``DOGOPS_EMULATOR_URL``, else ``AWS_ENDPOINT_URL``, else 127.0.0.1:5000; with the
stack's root key) for

- training and tuning jobs left to the host (``DOGOPS_TRAINING_RUNNER=host``) that nobody claimed within
  ``DOGOPS_RUNNER_GRACE_S`` (default 2) of their creation (``dogops promote train|tune`` claim theirs at once, to
  run them in their own shell with its settings): claimed and run here in Docker (``training.run_on_host``,
  ``tuning.run_on_host``), whoever created them (an SDK's ``fit()``, boto3, a tuner);
- endpoints ``Creating`` or ``Updating`` (``DOGOPS_HOSTING=host``): served by containers of the model's image,
  one per instance (AWS's PyTorch inference containers: ``DOGOPS_FRAMEWORK_SERVING_IMAGE``, default
  ``dogops-serving:dev``) in the gateway's network namespace (``services.hosting.endpoints``); a new instance count
  (``UpdateEndpointWeightsAndCapacities``, auto-scaling) adds or removes containers; those deleted on the emulator
  removed.

It holds no Docker socket for anyone else: no container gets one. It exits when the emulator has not answered
for ``DOGOPS_RUNNER_PATIENCE_S`` (default 60) seconds, i.e. once the stack is down.
"""

import logging
import os
import threading
import time
from datetime import datetime, timezone

import boto3

from ..hosting import endpoints
from ..hosting.containers import HostingError
from ..stack import settings
from . import training, tuning
from .framework_images import pytorch_inference

log = logging.getLogger("dogops.host_runner")
POLL_S = 1.0


def serving_image(uri: str) -> str:
    """The local image for a model's ``Image``: AWS's PyTorch inference containers are the serving image."""
    if pytorch_inference(uri) is not None:
        return os.environ.get("DOGOPS_FRAMEWORK_SERVING_IMAGE", "dogops-serving:dev")
    return uri


class Runner:
    def __init__(self, session: boto3.Session):
        self.session = session
        self.sm = session.client("sagemaker")
        self.grace = float(os.environ.get("DOGOPS_RUNNER_GRACE_S", "2"))
        self.tried: set[tuple[str, str]] = set()  # (kind, name) claimed or seen claimed by another
        self.hosting: set[str] = set()  # endpoints a thread of this runner is hosting now

    def once(self) -> None:
        now = datetime.now(timezone.utc)
        jobs = self.sm.list_training_jobs(StatusEquals="InProgress", MaxResults=100)["TrainingJobSummaries"]
        tunings = self.sm.list_hyper_parameter_tuning_jobs(StatusEquals="InProgress", MaxResults=100)[
            "HyperParameterTuningJobSummaries"]
        for kind, name, created in [*(("TrainingJob", j["TrainingJobName"], j["CreationTime"]) for j in jobs),
                                    *(("HyperParameterTuningJob", j["HyperParameterTuningJobName"],
                                       j["CreationTime"]) for j in tunings)]:
            if (kind, name) in self.tried or (now - created).total_seconds() < self.grace:
                continue
            self.tried.add((kind, name))
            run = training.run_on_host if kind == "TrainingJob" else tuning.run_on_host
            if run(self.session, name):
                log.info("%s %s: claimed, running it in Docker", kind, name)
        listed = self.sm.list_endpoints(MaxResults=100)["Endpoints"]
        for endpoint in listed:
            name = endpoint["EndpointName"]
            if endpoint["EndpointStatus"] in ("Creating", "Updating") and name not in self.hosting:
                self.hosting.add(name)
                threading.Thread(target=self._host, args=(name,), name=f"host-{name}", daemon=True).start()
        names = {e["EndpointName"] for e in listed}
        for gone in set(endpoints.hosted_endpoints()) - names - self.hosting:
            log.info("endpoint %s: deleted, removing its containers", gone)
            endpoints.unhost_endpoint(gone, self.session)

    def _host(self, name: str) -> None:
        try:
            hosted = endpoints.host_endpoint(name, self.session, endpoints.gateway_namespace(), serving_image)
            log.info("endpoint %s: %d instance(s): %s", name, len(hosted),
                     ", ".join(f"{h.container} (ready in {h.ready_s:.1f} s)" if h.ready_s else h.container
                               for h in hosted))
        except HostingError as exc:
            log.warning("endpoint %s: %s", name, exc)
        except Exception:  # noqa: BLE001 - the runner goes on with the other endpoints
            log.exception("endpoint %s: hosting failed", name)
        finally:
            self.hosting.discard(name)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    os.environ["AWS_ENDPOINT_URL"] = settings.emulator_url()  # never AWS itself, whatever the shell says
    session = boto3.Session(aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret(),
                            region_name=os.environ.get("AWS_DEFAULT_REGION") or settings.REGION)
    runner = Runner(session)
    patience = float(os.environ.get("DOGOPS_RUNNER_PATIENCE_S", "60"))
    answered = time.monotonic()
    log.info("running the compose stack's jobs and endpoints (emulator %s)", settings.emulator_url())
    while time.monotonic() - answered < patience:
        try:
            runner.once()
            answered = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the emulator is restarting or gone: ask again
            log.warning("the emulator did not answer: %s", exc)
        time.sleep(POLL_S)
    log.info("the emulator has not answered for %.0f s: the stack is down, stopping", patience)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

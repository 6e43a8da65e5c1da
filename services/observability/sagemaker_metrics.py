"""SageMaker's endpoint metrics, with AWS's names, units and dimensions (EndpointName, VariantName).

- ``AWS/SageMaker``, per request (:func:`invocation`): ``Invocations`` 1; ``InvocationsPerInstance``
  1/instances of the variant; ``Invocation4XXErrors``, ``Invocation5XXErrors`` and ``InvocationModelErrors`` 1 or
  0 (so their Average is a rate); ``ModelLatency`` (the model server's part, as the gateway times it) and
  ``OverheadLatency`` (the rest, from the request's arrival to the answer), in Microseconds, when the model
  answered. Per model server start (:func:`model_setup`): ``ModelSetupTime`` in Microseconds;
- ``/aws/sagemaker/Endpoints``, sampled per instance (:func:`utilization`): ``CPUUtilization`` (percent of one
  core, up to 100 x cores), ``MemoryUtilization`` and ``DiskUtilization`` (percent).
"""

from . import metrics

NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"


def _dims(endpoint: str, variant: str) -> tuple[tuple[str, str], ...]:
    return ("EndpointName", endpoint), ("VariantName", variant)


def invocation(region: str, endpoint: str, variant: str, instances: int, status: int,
               model_us: float | None, overhead_us: float | None) -> None:
    """One ``InvokeEndpoint`` that reached the variant: ``status`` the model server's HTTP status (0: none)."""
    samples = [("Invocations", 1, "None"), ("InvocationsPerInstance", 1 / max(1, instances), "None"),
               ("Invocation4XXErrors", int(400 <= status < 500), "None"),
               ("Invocation5XXErrors", int(500 <= status < 600), "None"),
               ("InvocationModelErrors", int(not 200 <= status < 300), "None")]
    if model_us is not None:
        samples.append(("ModelLatency", model_us, "Microseconds"))
    if overhead_us is not None:
        samples.append(("OverheadLatency", overhead_us, "Microseconds"))
    metrics.shared().record_many(NAMESPACE, _dims(endpoint, variant), samples, region=region)


def model_setup(region: str, endpoint: str, variant: str, seconds: float,
                publisher: metrics.MetricPublisher | None = None) -> None:
    """A model server of the variant became ready ``seconds`` after it was started."""
    (publisher or metrics.shared()).record(NAMESPACE, "ModelSetupTime", seconds * 1e6, "Microseconds",
                                           _dims(endpoint, variant), region=region)


def utilization(region: str, endpoint: str, variant: str, cpu: float, memory: float, disk: float | None = None,
                publisher: metrics.MetricPublisher | None = None) -> None:
    """One sample of an instance's use, in percent (``disk`` None: not known)."""
    samples = [("CPUUtilization", cpu, "Percent"), ("MemoryUtilization", memory, "Percent")]
    if disk is not None:
        samples.append(("DiskUtilization", disk, "Percent"))
    (publisher or metrics.shared()).record_many(INSTANCE_NAMESPACE, _dims(endpoint, variant), samples, region=region)

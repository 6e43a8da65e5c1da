"""Lambda's function metrics, with AWS's names, units and dimensions (namespace ``AWS/Lambda``), for the gateway's
runtime to call around each invocation:

- :func:`invoked`: ``Invocations`` 1 and ``Errors`` 1 or 0 (Count), ``Duration`` (Milliseconds), per
  ``FunctionName``, and per ``FunctionName`` + ``Resource`` (``name:qualifier``) when a version or alias was called,
  as AWS publishes both;
- :func:`throttled`: ``Throttles`` 1 (a request refused for concurrency; not an invocation);
- :func:`concurrency`: ``ConcurrentExecutions`` (Count; its Maximum is what AWS charts), per function and for the
  account (no dimension);
- :func:`asynchronous`: the asynchronous invocation metrics (``services.gateway.lambda_async``).
"""

from . import metrics

NAMESPACE = "AWS/Lambda"


def _dimension_sets(function: str, qualifier: str | None) -> list[tuple[tuple[str, str], ...]]:
    sets = [(("FunctionName", function),)]
    if qualifier and qualifier != "$LATEST":
        sets.append((("FunctionName", function), ("Resource", f"{function}:{qualifier}")))
    return sets


def invoked(region: str, function: str, duration_ms: float, error: bool, qualifier: str | None = None) -> None:
    """One invocation that ran (``error``: the function failed: an unhandled error, a timeout, a crash)."""
    for dims in _dimension_sets(function, qualifier):
        metrics.shared().record_many(NAMESPACE, dims, [("Invocations", 1, "Count"), ("Errors", int(error), "Count"),
                                                       ("Duration", duration_ms, "Milliseconds")], region=region)


def throttled(region: str, function: str, qualifier: str | None = None) -> None:
    """One request refused with 429 for lack of concurrency."""
    for dims in _dimension_sets(function, qualifier):
        metrics.shared().record(NAMESPACE, "Throttles", 1, "Count", dims, region=region)


def concurrency(region: str, function: str, running: int, account_running: int) -> None:
    """How many of the function's (and the account's) invocations run now."""
    record = metrics.shared().record
    record(NAMESPACE, "ConcurrentExecutions", running, "Count", (("FunctionName", function),), region=region)
    record(NAMESPACE, "ConcurrentExecutions", account_running, "Count", (), region=region)


def asynchronous(region: str, function: str, name: str, value: float = 1, unit: str = "Count",
                 qualifier: str | None = None) -> None:
    """An asynchronous invocation metric, as AWS names them: ``AsyncEventsReceived``, ``AsyncEventAge``
    (Milliseconds), ``AsyncEventsDropped``, ``DestinationDeliveryFailures``, ``DeadLetterErrors``."""
    for dims in _dimension_sets(function, qualifier):
        metrics.shared().record(NAMESPACE, name, value, unit, dims, region=region)

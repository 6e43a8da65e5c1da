"""CloudWatch as AWS answers it, where moto differs: statistics per period and alarms that are evaluated.

- ``PutMetricData``: a datum's ``Values``/``Counts`` are kept as one datum (moto made one per count);
- ``GetMetricStatistics``: a metric is its namespace, name and *whole* set of dimensions (a query naming only some
  of them finds nothing, as on AWS); periods start at ``StartTime`` rounded down to the minute (to the second for
  periods under a minute), each datapoint stamped with its period's start (moto starts them at the first datum);
  ``ExtendedStatistics`` (``p50``, ``p99.9``, ...) from the values sent (``Value``, ``Values`` with ``Counts``), none
  where a ``StatisticValues`` datum is in the period, as on AWS;
- ``GetMetricData``: its ``MetricStat`` queries answered the same way (``Stat`` may be ``pNN``); an ``Expression`` as
  moto answers it (only one naming another query's id);
- ``PutMetricAlarm``: a new alarm is ``INSUFFICIENT_DATA`` (moto: ``OK``), and a thread evaluates every metric
  alarm every ``DOGOPS_ALARM_EVALUATION_S`` seconds (default 60, as CloudWatch evaluates standard alarms each
  minute): the statistic over its last ``EvaluationPeriods`` periods, ``DatapointsToAlarm`` of them breaching the
  threshold make it ``ALARM``, ``TreatMissingData`` (missing, notBreaching, breaching, ignore) decides the periods
  without data; each change is in the alarm's ``StateReason``/``StateReasonData`` and in ``DescribeAlarmHistory``
  (which moto lacks). Alarm actions are not taken.
"""

import json
import logging
import math
import os
from datetime import datetime, timedelta, timezone

from moto.cloudwatch.exceptions import InvalidParameterValue
from moto.cloudwatch.metric_data_expression_parser import parse_expression
from moto.cloudwatch.models import (
    CloudWatchBackend,
    MetricAggregatedDatum,
    MetricDatum,
    Statistics,
    cloudwatch_backends,
)
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult

from .periodic import Periodic

log = logging.getLogger(__name__)

COMPARISONS = {
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


def _naive(moment: datetime) -> datetime:
    """UTC without tzinfo, as moto keeps its timestamps."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _rounded(start: datetime, period: int) -> datetime:
    return start.replace(second=0, microsecond=0) if period >= 60 else start.replace(microsecond=0)


class Distribution(MetricAggregatedDatum):
    """A datum's ``Values`` with their ``Counts``, kept as sent (moto made one datum per count): its statistics as
    an aggregate's, its percentiles from the pairs."""

    def __init__(self, namespace: str, name: str, pairs: list[tuple[float, float]], dimensions: list[dict],
                 timestamp, unit):
        super().__init__(namespace, name, min(v for v, _ in pairs), max(v for v, _ in pairs),
                         sum(c for _, c in pairs), sum(v * c for v, c in pairs), dimensions, timestamp, unit)
        self.pairs = pairs


def _put_metric_data(self, namespace: str, metric_data: list[dict]) -> None:
    for number, metric in enumerate(metric_data, 1):
        self._validate_parameters_put_metric_data(metric, number)
    others = []
    for metric in metric_data:
        if not metric.get("Values"):
            others.append(metric)
            continue
        counts = metric.get("Counts") or [1] * len(metric["Values"])
        pairs = [(float(v), float(c)) for v, c in zip(metric["Values"], counts) if float(c) > 0]
        if pairs:
            self.metric_data.append(Distribution(namespace, metric["MetricName"], pairs,
                                                 metric.get("Dimensions", []), metric.get("Timestamp"),
                                                 metric.get("Unit")))
    if others:
        _moto_put_metric_data(self, namespace, others)


_moto_put_metric_data = CloudWatchBackend.put_metric_data
CloudWatchBackend.put_metric_data = _put_metric_data


def percentile(pairs: list[tuple[float, float]], p: float) -> float:
    """The ``p``-th percentile of values with counts (nearest rank, as CloudWatch's pNN of raw values)."""
    ordered = sorted(pairs)
    rank, seen = max(1.0, math.ceil(p / 100 * sum(c for _, c in ordered))), 0.0
    for value, count in ordered:
        seen += count
        if seen >= rank:
            return value
    return ordered[-1][0]


class _Period(Statistics):
    """One period's statistics; ``extended`` holds the pNN asked for (from the values sent one by one)."""

    def __init__(self, stats: list[str], extended: list[str], start: datetime):
        super().__init__(stats, start)
        self.extended = extended

    @property
    def extended_statistics(self) -> dict[str, float] | None:
        pairs = [(md.value, 1.0) for md in self.metric_data if isinstance(md, MetricDatum)]
        pairs += [pair for md in self.metric_data if isinstance(md, Distribution) for pair in md.pairs]
        if not self.extended or not pairs or any(
                isinstance(md, MetricAggregatedDatum) and not isinstance(md, Distribution) for md in self.metric_data):
            return None  # a StatisticValues datum has no values to take percentiles of (as on AWS)
        return {p: percentile(pairs, float(p[1:])) for p in self.extended}


def matching(backend: CloudWatchBackend, namespace: str, name: str, dimensions: list[dict], unit: str | None,
             start: datetime, end: datetime) -> list:
    """The data of exactly that metric (every dimension named) between ``start`` and ``end``."""
    wanted = sorted((d["Name"], d["Value"]) for d in dimensions or [])
    return [md for md in list(backend.get_all_metrics())
            if md.namespace == namespace and md.name == name and start <= _naive(md.timestamp) < end
            and (not unit or md.unit == unit) and sorted((d.name, d.value) for d in md.dimensions) == wanted]


def statistics(backend: CloudWatchBackend, namespace: str, name: str, start: datetime, end: datetime, period: int,
               stats: list[str], dimensions: list[dict], unit: str | None = None,
               extended: list[str] | None = None) -> list[_Period]:
    """The metric's datapoints, one per period that has data (oldest first)."""
    start, end = _rounded(_naive(start), period), _naive(end).replace(microsecond=0)
    if start >= end:
        raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
    periods: dict[int, _Period] = {}
    for md in matching(backend, namespace, name, dimensions, unit, start, end):
        index = int((_naive(md.timestamp) - start).total_seconds() // period)
        point = periods.setdefault(index, _Period(stats, extended or [], start + timedelta(seconds=index * period)))
        point.metric_data.append(md)
        point.unit = md.unit
    return [periods[i] for i in sorted(periods)]


def _get_metric_statistics(self) -> ActionResult:
    stats, extended = self._get_param("Statistics", []), self._get_param("ExtendedStatistics", [])
    if not stats and not extended:
        from moto.cloudwatch.exceptions import InvalidParameterCombination

        raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
    bad = [p for p in extended if not _is_percentile(p)]
    if bad:
        raise InvalidParameterValue(f"The value {bad[0]} for parameter ExtendedStatistics is not supported.")
    points = statistics(self.cloudwatch_backend, self._get_param("Namespace"), self._get_param("MetricName"),
                        self._get_param("StartTime"), self._get_param("EndTime"), self._get_int_param("Period"),
                        stats, self._get_param("Dimensions", []), self._get_param("Unit"), extended)
    return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": points})


def _is_percentile(name: str) -> bool:
    try:
        return name.startswith("p") and 0 <= float(name[1:]) <= 100
    except ValueError:
        return False


CloudWatchResponse.get_metric_statistics = _get_metric_statistics


def _get_metric_data(self, queries: list[dict], start_time: datetime, end_time: datetime,
                     scan_by: str = "TimestampDescending") -> list[dict]:
    """``GetMetricData``: each ``MetricStat`` query per period as ``GetMetricStatistics`` answers it (whole set of
    dimensions, periods on the minute, ``pNN`` from the values sent: moto had neither), then moto's expressions."""
    results, returned = [], []
    for query in queries:
        if "MetricStat" not in query:
            continue
        stat, metric = query["MetricStat"], query["MetricStat"]["Metric"]
        name = stat["Stat"]
        extended = [name] if _is_percentile(name) else []
        points = statistics(self, metric["Namespace"], metric["MetricName"], start_time, end_time,
                            int(stat["Period"]), [] if extended else [name], metric.get("Dimensions", []),
                            stat.get("Unit"), extended)
        found = [(p.timestamp, (p.extended_statistics or {}).get(name) if extended else p.get_statistics_for_type(name))
                 for p in points]
        found = [(moment, value) for moment, value in found if value is not None]
        if scan_by == "TimestampDescending":
            found.reverse()
        result = {"id": query["Id"], "label": query.get("Label") or metric["MetricName"],
                  "values": [v for _, v in found], "timestamps": [t for t, _ in found], "status_code": "Complete"}
        results.append(result)
        if query.get("ReturnData", True):
            returned.append(result)
    for query in queries:
        if "Expression" in query:
            values, timestamps = parse_expression(query["Expression"], results)
            returned.append({"id": query["Id"], "label": query.get("Label") or query["Id"], "values": values,
                             "timestamps": timestamps, "status_code": "Complete"})
    return returned


CloudWatchBackend.get_metric_data = _get_metric_data


# -- alarms ----------------------------------------------------------------------------------------------------------
def _put_metric_alarm(self, *args, **kwargs):
    name = kwargs.get("name", args[0] if args else None)
    existing = self.alarms.get(name)
    alarm = _moto_put_metric_alarm(self, *args, **kwargs)
    if existing is not None:  # an update keeps the state, as on AWS
        alarm.state_value, alarm.state_reason, alarm.state_reason_data = (
            existing.state_value, existing.state_reason, existing.state_reason_data)
        alarm.state_updated_timestamp, alarm.history = existing.state_updated_timestamp, existing.history
    else:
        alarm.state_value = "INSUFFICIENT_DATA"
    _evaluator.start()
    return alarm


_moto_put_metric_alarm = CloudWatchBackend.put_metric_alarm
CloudWatchBackend.put_metric_alarm = _put_metric_alarm


def evaluate(backend: CloudWatchBackend, alarm, now: datetime) -> None:
    """One evaluation of a metric alarm: its state (and reason) from its last ``EvaluationPeriods`` periods."""
    if not alarm.metric_name or alarm.rule:  # metric math and composite alarms are not evaluated
        return
    period, count = int(alarm.period), int(alarm.evaluation_periods)
    needed = int(alarm.datapoints_to_alarm or count)
    end = _rounded(now, period)
    start = end - timedelta(seconds=period * count)
    stat = alarm.statistic or alarm.extended_statistic
    dims = [{"Name": d.name, "Value": d.value} for d in alarm.dimensions]
    points = statistics(backend, alarm.namespace, alarm.metric_name, start, end, period,
                        [alarm.statistic] if alarm.statistic else [], dims, alarm.unit,
                        [alarm.extended_statistic] if alarm.extended_statistic else [])
    values = {p.timestamp: (p.get_statistics_for_type(stat) if alarm.statistic else
                            (p.extended_statistics or {}).get(stat)) for p in points}
    values = {t: float(v) for t, v in values.items() if v is not None}
    compare, words = COMPARISONS.get(alarm.comparison_operator, (None, None))
    if compare is None:  # anomaly detection bands are not evaluated
        return
    treat = alarm.treat_missing_data or "missing"
    breaching = [t for t, v in values.items() if compare(v, alarm.threshold)]
    missing = count - len(values)
    if treat == "breaching":
        breaches = len(breaching) + missing
    else:
        breaches = len(breaching)
    if not values and treat in ("missing", "ignore"):
        if treat == "ignore":
            return
        state = "INSUFFICIENT_DATA"
        reason = f"Insufficient Data: {count} datapoint{'s' if count > 1 else ''} were unknown."
    elif breaches >= needed:
        state = "ALARM"
        reason = _reason(values, breaching, count, words, alarm.threshold, needed, True)
    else:
        state = "OK"
        reason = _reason(values, breaching, count, words, alarm.threshold, needed, False)
    if state == alarm.state_value:
        return
    data = {"version": "1.0", "queryDate": now.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "startDate": start.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), "statistic": stat, "period": period,
            "recentDatapoints": [values[t] for t in sorted(values)], "threshold": alarm.threshold,
            "evaluatedDatapoints": [{"timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), "sampleCount": 1.0,
                                     "value": values[t]} for t in sorted(values, reverse=True)]}
    _history(alarm).insert(0, {
        "AlarmName": alarm.name, "AlarmType": "MetricAlarm", "Timestamp": datetime.now(timezone.utc),
        "HistoryItemType": "StateUpdate", "HistorySummary": f"Alarm updated from {alarm.state_value} to {state}",
        "HistoryData": json.dumps({"version": "1.0", "oldState": {"stateValue": alarm.state_value,
                                                                   "stateReason": alarm.state_reason},
                                   "newState": {"stateValue": state, "stateReason": reason,
                                                "stateReasonData": data}})})
    alarm.update_state(reason, json.dumps(data), state)
    log.info("alarm %s: %s (%s)", alarm.name, state, reason)


def _history(alarm) -> list[dict]:
    """The alarm's state changes, newest first (``DescribeAlarmHistory``)."""
    if not hasattr(alarm, "dogops_history"):
        alarm.dogops_history = []
    return alarm.dogops_history


def _describe_alarm_history(self) -> ActionResult:
    """``DescribeAlarmHistory`` (moto has none): the evaluated state changes, newest first (``ScanBy``), filtered by
    ``AlarmName``, ``HistoryItemType``, ``StartDate``/``EndDate``, at most ``MaxRecords``."""
    name, kind = self._get_param("AlarmName"), self._get_param("HistoryItemType")
    start, end = self._get_param("StartDate"), self._get_param("EndDate")
    items = [item for alarm in self.cloudwatch_backend.alarms.values() if name in (None, alarm.name)
             for item in _history(alarm) if kind in (None, item["HistoryItemType"])
             and (start is None or _naive(item["Timestamp"]) >= _naive(start))
             and (end is None or _naive(item["Timestamp"]) <= _naive(end))]
    items.sort(key=lambda item: item["Timestamp"], reverse=self._get_param("ScanBy") != "TimestampAscending")
    return ActionResult({"AlarmHistoryItems": items[:int(self._get_param("MaxRecords") or 100)]})


CloudWatchResponse.describe_alarm_history = _describe_alarm_history


def _reason(values: dict, breaching: list, count: int, words: str, threshold: float, needed: int,
            alarmed: bool) -> str:
    """CloudWatch's StateReason for a threshold crossing."""
    shown = sorted(values, reverse=True)[:count]
    listed = ", ".join(f"{values[t]} ({t.strftime('%d/%m/%y %H:%M:%S')})" for t in shown)
    if alarmed:
        return (f"Threshold Crossed: {len(breaching)} out of the last {count} datapoints [{listed}] "
                f"{'was' if len(breaching) == 1 else 'were'} {words} the threshold ({threshold}) (minimum {needed} "
                f"datapoint{'s' if needed > 1 else ''} for OK -> ALARM transition).")
    return (f"Threshold Crossed: {len(shown)} datapoint{'s' if len(shown) > 1 else ''} [{listed}] "
            f"{'was' if len(shown) == 1 else 'were'} not {words} the threshold ({threshold}).")


def _evaluate_all() -> None:
    """Every alarm of every account and region."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for account in list(cloudwatch_backends):
        for region, backend in list(cloudwatch_backends[account].items()):
            for alarm in list(backend.alarms.values()):
                try:
                    evaluate(backend, alarm, now)
                except Exception:  # noqa: BLE001 - one alarm's trouble stops no other
                    log.exception("alarm %s (%s %s) not evaluated", alarm.name, account, region)


_evaluator = Periodic("cloudwatch-alarms", _evaluate_all,  # started by the first alarm
                      lambda: float(os.environ.get("DOGOPS_ALARM_EVALUATION_S", "60")))

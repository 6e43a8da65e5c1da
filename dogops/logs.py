"""``dogops logs {job|endpoint|function} NAME [--follow] [--since 10m]``: the CloudWatch Logs of a training job (and
so of a tuning trial), an endpoint or a Lambda function, as ``aws logs tail`` prints them: one line per event,
``<time> <stream> <message>``, every stream interleaved by time.

The groups are AWS's: ``/aws/sagemaker/TrainingJobs`` (the job's streams, ``NAME/algo-N-<epoch>``),
``/aws/sagemaker/Endpoints/NAME`` (``<variant>/<instance id>``), ``/aws/lambda/NAME``. boto3 reaches the
environment's endpoint (``AWS_ENDPOINT_URL_LOGS``, ``AWS_ENDPOINT_URL``: ``eval "$(dogops env)"``), else the local
stack's emulator with its own key. ``--follow`` polls (``FilterLogEvents``, as ``aws logs tail --follow``) until
Ctrl-C; for a job it stops once the job has ended and its last lines are printed.
"""

import argparse
import logging
import os
import re
import sys
import time
from datetime import datetime, timedelta, timezone

POLL_S = 1.0
GROUPS = {"job": "/aws/sagemaker/TrainingJobs", "endpoint": "/aws/sagemaker/Endpoints/{}", "function": "/aws/lambda/{}"}
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
ENDED = ("Completed", "Failed", "Stopped")


def since(text: str, now: datetime | None = None) -> int:
    """``--since`` (``30s``, ``10m``, ``2h``, ``1d``, ``1w``, or an ISO 8601 time) as epoch milliseconds."""
    now = now or datetime.now(timezone.utc)
    relative = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if relative:
        moment = now - timedelta(**{UNITS[relative[2]]: int(relative[1])})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"--since takes 30s, 10m, 2h, 1d, 1w or an ISO 8601 time, not {text!r}") \
                from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(GROUPS), help="a training job (or tuning trial), an endpoint, a "
                        "Lambda function")
    parser.add_argument("name")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops; a job's "
                        "stop when it ends)")
    parser.add_argument("--since", type=since, help="only lines from then on: 30s, 10m, 2h, 1d, 1w or an ISO 8601 "
                        "time (default: all)")
    parser.set_defaults(func=run)


def _clients():
    import boto3

    from services.stack import settings

    logging.getLogger("botocore").setLevel(logging.WARNING)
    if os.environ.get("AWS_ENDPOINT_URL_LOGS") or os.environ.get("AWS_ENDPOINT_URL"):
        return boto3.client("logs"), boto3.client("sagemaker")
    local = {"endpoint_url": settings.emulator_url(), "region_name": settings.REGION,
             "aws_access_key_id": settings.ACCESS_KEY, "aws_secret_access_key": settings.root_secret()}
    return boto3.client("logs", **local), boto3.client("sagemaker", **local)


def run(args) -> None:
    logs, sagemaker = _clients()
    group = GROUPS[args.kind].format(args.name)
    ended = (lambda: sagemaker.describe_training_job(TrainingJobName=args.name)["TrainingJobStatus"] in ENDED) \
        if args.kind == "job" else (lambda: False)
    prefix = f"{args.name}/" if args.kind == "job" else None
    if not tail(logs, group, prefix, args.since, args.follow, ended):
        print(f"no log lines in {group}{f' (streams {prefix}*)' if prefix else ''}"
              f"{' since then' if args.since else ''}", file=sys.stderr)


def tail(logs, group: str, prefix: str | None, start: int | None, follow: bool, ended, out=sys.stdout) -> int:
    """Print the group's events (of the streams named ``prefix...``) from ``start``; with ``follow``, the new ones
    until ``ended()`` (then once more) or Ctrl-C. The number of events printed."""
    printed, seen, last = 0, set(), start or 0
    try:
        while True:
            done = follow and ended()
            events = _events(logs, group, prefix, last)
            for event in events:
                if event["eventId"] in seen:
                    continue
                moment = datetime.fromtimestamp(event["timestamp"] / 1000, timezone.utc)
                message = event["message"].rstrip("\n")  # Lambda's lines end with one
                print(f"{moment.isoformat(timespec='milliseconds')} {event['logStreamName']} {message}", file=out,
                      flush=True)
                printed += 1
            if events:  # as `aws logs tail`: the next poll starts at the last time, skipping what it printed
                last = events[-1]["timestamp"]
                seen = {e["eventId"] for e in events if e["timestamp"] == last}
            if not follow or done:
                return printed
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return printed


def _events(logs, group: str, prefix: str | None, start: int) -> list[dict]:
    """Every event of the group (of the streams named ``prefix...``) from ``start``, oldest first."""
    request = {"logGroupName": group, "startTime": start, "interleaved": True}
    try:
        if prefix is not None:
            pages = logs.get_paginator("describe_log_streams").paginate(logGroupName=group, logStreamNamePrefix=prefix)
            names = [s["logStreamName"] for page in pages for s in page["logStreams"]]
            if not names:
                return []
            request["logStreamNames"] = names[:100]
        events = [e for page in logs.get_paginator("filter_log_events").paginate(**request) for e in page["events"]]
    except logs.exceptions.ResourceNotFoundException:  # nothing logged yet
        return []
    return sorted(events, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))

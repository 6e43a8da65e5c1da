"""``dogops promote plan|apply`` and ``dogops destroy``: the command line of one stage's stack."""

import argparse
import sys
from pathlib import Path

from .config import CONFIG, check_target, load_stage


def _session(args):
    import boto3

    check_target(args.aws)
    stage = load_stage(args.stage, args.config)
    return stage, boto3.Session(region_name=stage.region)


def _plan(args):
    from ..tuning.best import CURRENT, load_best
    from .stack import format_plan, plan

    stage, session = _session(args)
    url = args.model_data_url or load_best(CURRENT)["model_data_url"]
    p = plan(stage, args.image, url, session)
    print(format_plan(stage, p))
    return stage, session, p


def _plan_only(args) -> None:
    from .stack import discard

    _, session, p = _plan(args)
    discard(p, session)


def _apply(args) -> None:
    from .stack import apply, discard

    _, session, p = _plan(args)
    if p.change_set and not args.yes:
        answer = input("apply these changes? [y/N] ") if sys.stdin.isatty() else ""
        if answer.strip().lower() not in ("y", "yes"):
            discard(p, session)
            raise SystemExit("not applied (pass --yes to apply without asking)")
    print(f"stack {p.stack}: {apply(p, session)}")


def _destroy(args) -> None:
    from .stack import destroy

    stage, session = _session(args)
    destroy(stage, session)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, help="a stage of the config (dev, prod)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--aws", action="store_true", help="deploy to AWS (AWS_ENDPOINT_URL must be unset); "
                        "without it only a local endpoint is accepted")


def add_commands(commands) -> None:
    """Add ``promote`` (``plan``, ``apply``) and ``destroy`` to the ``dogops`` subcommands."""
    promote = commands.add_parser("promote", help="the stage's CloudFormation stack: plan, then apply").add_subparsers(
        dest="promote_command", required=True)
    for name, func, text in (("plan", _plan_only, "print the change set and the cost estimate; change nothing"),
                             ("apply", _apply, "plan, confirm, apply (wait, printing stack events)")):
        sub = promote.add_parser(name, help=text)
        _common(sub)
        sub.add_argument("--image", required=True, help="the serving image in ECR, by digest")
        sub.add_argument("--model-data-url", help="s3://.../model.tar.gz (default: the best model, .dogops/best.json)")
        if name == "apply":
            sub.add_argument("--yes", action="store_true", help="apply without asking")
        sub.set_defaults(func=func)
    destroy = commands.add_parser("destroy", help="delete the stage's stack; check that nothing tagged remains")
    _common(destroy)
    destroy.set_defaults(func=_destroy)

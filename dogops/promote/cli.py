"""``dogops promote push|plan|apply`` and ``dogops destroy``: the command line of one stage's image and stack."""

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


def _push(args) -> None:
    from .push import push

    stage, session = _session(args)
    name, _, local_tag = args.image.rsplit("/", 1)[-1].partition(":")
    repository = args.repository or f"{stage.stack_name}/{name.removeprefix(stage.project + '-')}"
    print(push(args.image, repository, args.tag or local_tag or "latest", stage, session, force=args.force))


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
    """Add ``promote`` (``push``, ``plan``, ``apply``) and ``destroy`` to the ``dogops`` subcommands."""
    promote = commands.add_parser("promote", help="the stage's image and CloudFormation stack: push, plan, apply"
                                  ).add_subparsers(dest="promote_command", required=True)
    push = promote.add_parser("push", help="push a local image to ECR unchanged; print its URI by digest")
    _common(push)
    push.add_argument("image", nargs="?", default="dogops-serving:dev", help="the local image (default: %(default)s)")
    push.add_argument("--repository", help="the ECR repository (default: <project>-<stage>/<image name>)")
    push.add_argument("--tag", help="the tag pushed (default: the local image's tag)")
    push.add_argument("--force", action="store_true",
                      help="push even if `STACK=compose pytest integration_tests` has not passed against this image")
    push.set_defaults(func=_push)
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

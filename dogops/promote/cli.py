"""``dogops promote push|preflight|plan|apply|train|tune`` and ``dogops destroy``: the command line of one stage's image and stack."""

import argparse
import sys
from pathlib import Path

from ..commands import json_flag
from .config import CONFIG, connect


def _session(args):
    return connect(args.stage, args.config, args.aws)


def _model_data_url(args) -> str:
    from ..tuning.best import CURRENT, load_best

    return args.model_data_url or load_best(CURRENT)["model_data_url"]


def _plan(stage, session, image: str, model_data_url: str):
    """The expiry stack's plan and the stage stack's, both printed: what ``apply`` asks to confirm is all it does."""
    from .stack import format_plan, plan, plan_expiry

    plans = (plan_expiry(session, stage), plan(stage, image, model_data_url, session))
    for p in plans:
        print(format_plan(stage, p))
    return plans


def _changes(p) -> list[dict]:
    return [{"action": c["Action"], "logical_id": c["LogicalResourceId"], "resource_type": c["ResourceType"],
             "physical_id": c.get("PhysicalResourceId"), "replacement": c.get("Replacement")} for c in p.changes]


def _pin(session, stage, model_data_url: str, check=lambda model_tar: None) -> str:
    from .stack import pin_model

    pinned = pin_model(session, model_data_url, stage.project, check)
    print(f"model {model_data_url} pinned as {pinned}")
    return pinned


def _plan_only(args) -> dict:
    """Pin the model, plan, discard the plan; return it as ``--json`` prints it."""
    from .stack import discard

    stage, session = _session(args)
    pinned = _pin(session, stage, _model_data_url(args))
    expiry, p = _plan(stage, session, args.image, pinned)
    discard(expiry, session)
    discard(p, session)
    return {"target": session.target.document(), "stage": stage.name, "stack": p.stack, "image": args.image,
            "model_data_url": pinned, "change_set_type": p.change_set_type, "cost": p.cost, "changes": _changes(p),
            "expiry_stack": {"stack": expiry.stack, "change_set_type": expiry.change_set_type,
                             "changes": _changes(expiry)}}


def _preflight(stage, session, image: str, model_data_url: str, model_tar: Path | None = None) -> None:
    from .preflight import PreflightFailed, preflight

    try:
        preflight(stage, image, model_data_url, session, model_tar=model_tar)
    except PreflightFailed as exc:
        raise SystemExit(str(exc)) from None


def _preflight_only(args) -> None:
    stage, session = _session(args)
    _preflight(stage, session, args.image, _model_data_url(args))


def _apply(args) -> None:
    """Push (unless --image names a pushed digest), preflight and pin the model, plan, confirm, apply."""
    from .stack import apply, discard, ensure_expiry_roles, outputs

    stage, session = _session(args)
    image = args.image
    if not image:
        image = _push_image(args, stage, session, args.local_image)
        print(f"pushed {args.local_image}: {image}")
    model_data_url = _model_data_url(args)
    pinned = _pin(session, stage, model_data_url,  # the bytes preflight checks are the bytes the plan deploys
                  lambda model_tar: _preflight(stage, session, image, model_data_url, model_tar))
    expiry, p = _plan(stage, session, image, pinned)
    if (p.change_set or expiry.change_set) and not args.yes:
        answer = input(f"apply these changes to {session.target}? [y/N] ") if sys.stdin.isatty() else ""
        if answer.strip().lower() not in ("y", "yes"):
            discard(expiry, session)
            discard(p, session)
            raise SystemExit("not applied (pass --yes to apply without asking)")
    ensure_expiry_roles(session, stage, p=expiry)  # first: the roles the stack's schedule deletes it with
    print(f"stack {p.stack}: {apply(p, session)}")
    if not args.aws:
        _host_locally(stage, session)
    for key, value in outputs(session, stage.stack_name).items():
        print(f"  {key}: {value}")


def _host_locally(stage, session) -> None:
    """On the local stack, serve the endpoint CloudFormation created from its own containers, one per instance (as
    SageMaker would)."""
    from services.hosting.endpoints import host_endpoint

    for hosted in host_endpoint(stage.stack_name, session):
        print(f"local stack: endpoint {hosted.endpoint} served by container {hosted.container} at {hosted.url}"
              + (f" (ready in {hosted.ready_s:.1f} s)" if hosted.ready_s else ""))


def _push_image(args, stage, session, image: str) -> str:
    from .push import push

    name, _, local_tag = image.rsplit("/", 1)[-1].partition(":")
    repository = getattr(args, "repository", None) or f"{stage.stack_name}/{name.removeprefix(stage.project + '-')}"
    return push(image, repository, getattr(args, "tag", None) or local_tag or "latest", stage, session,
                force=args.force)


def _push(args) -> None:
    stage, session = _session(args)
    print(_push_image(args, stage, session, args.image))


def _destroy(args) -> None:
    from .destroy import destroy

    stage, session = connect(args.stage, args.config, args.aws, limits=False)  # whatever it asked for goes
    if not args.aws:
        from services.hosting.endpoints import unhost_endpoint

        unhost_endpoint(stage.stack_name, session)
    destroy(stage, session, images=args.images)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, help="a stage of the config (dev, prod)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--aws", action="store_true", help="act on AWS: every endpoint boto3 resolves must be "
                        "AWS's; without it, every one must be the local stack's")


def add_promote_arguments(parser) -> None:
    """``dogops promote``'s subcommands: ``push``, ``preflight``, ``plan``, ``apply``; ``train`` and ``tune``, whose
    arguments (and modules) are loaded when named."""
    promote = parser.add_subparsers(dest="promote_command", required=True)
    push = promote.add_parser("push", help="push a local image to ECR unchanged; print its URI by digest")
    _common(push)
    push.add_argument("image", nargs="?", default="dogops-serving:dev", help="the local image (default: %(default)s)")
    push.add_argument("--repository", help="the ECR repository (default: <project>-<stage>/<image name>)")
    push.add_argument("--tag", help="the tag pushed (default: the local image's tag)")
    push.add_argument("--force", action="store_true",
                      help="push even if `STACK=compose pytest integration_tests` has not passed against this image")
    push.set_defaults(func=_push)
    plan = promote.add_parser("plan", help="pin the model; print the change set and the cost estimate; deploy "
                          "nothing")
    preflight = promote.add_parser("preflight", help="cfn-lint, checkov, parliament; the model's layout; the pushed "
                                   "digest served locally with the model (ping, a prediction, cold start)")
    apply = promote.add_parser("apply", help="push (without --image), preflight and pin the model, plan, confirm, "
                               "apply (waits, printing stack events)")
    for sub, func in ((plan, _plan_only), (preflight, _preflight_only), (apply, _apply)):
        _common(sub)
        sub.add_argument("--image", required=sub is not apply, help="the serving image in ECR, by digest"
                         + (" (default: push --local-image first)" if sub is apply else ""))
        sub.add_argument("--model-data-url", help="s3://.../model.tar.gz (default: the best model, .dogops/best.json)")
        sub.set_defaults(func=func)
    apply.add_argument("--local-image", default="dogops-serving:dev", help="pushed when --image is not given "
                       "(default: %(default)s)")
    apply.add_argument("--force", action="store_true", help="push even if the compose integration suite has not "
                       "passed against the local image")
    apply.add_argument("--yes", action="store_true", help="apply without asking")
    json_flag(plan)
    train = promote.add_parser("train", help="the training image as a SageMaker training job; watch it; record its "
                               "model as the stage's candidate", add="dogops.promote.train:train_arguments")
    json_flag(train)
    promote.add_parser("tune", help="the tuning spec as a SageMaker hyperparameter tuning job; watch it; record the "
                       "best training job's model as the best", add="dogops.promote.tune:tune_arguments")


def add_destroy_arguments(destroy) -> None:
    """``dogops destroy``'s arguments."""
    _common(destroy)
    destroy.add_argument("--images", action="store_true", help="also delete the stage's ECR repositories (tagged "
                         "project and stage by `dogops promote push`) with their images")
    destroy.set_defaults(func=_destroy)

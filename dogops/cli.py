"""``dogops``: the kit's command line.

    dogops data synthetic --out DIR [--classes N] [--per-class M] [--size PX] [--seed S]
    dogops data dogimages --out DIR [--sha256 HEX]
    dogops data upload DIR s3://BUCKET/PREFIX
    dogops predict IMAGE|URL [--endpoint http://127.0.0.1:8080] [--top-k 5] [--wait SECONDS]
    dogops tune --data DIR [--spec FILE] [--name NAME] [--output s3://BUCKET/PREFIX] [--image IMAGE] [--cold]
    dogops tune-request --spec FILE --image URI --role ARN --training s3://... --output s3://...
    dogops deploy [--endpoint-name dogops] [--image IMAGE] [--record .dogops/best.json]
    dogops up [--data DIR] [--retrain] [--foreground]      the local stack as host processes (no Docker)
    dogops down | status [--json] | env                    stop it, check it, export lines for boto3
    dogops status --aws [--enforce-ttl [--yes]] [--json]   what runs for the project on AWS, its cost per hour
    dogops invoke --url URL | --file PATH [--function NAME]
    dogops promote push [IMAGE] --stage S [--repository R] [--tag T] [--aws]   print its ECR URI by digest
    dogops promote plan|apply --stage S --image URI [--model-data-url s3://...] [--yes] [--aws] [--json: plan]
    dogops promote train|tune --stage S --image URI [--spot] [--aws] [--json: train]
    dogops capacity --stage S --rps R [--model DIR|model.tar.gz] [--p99-ms MS] [--write] [--json]
    dogops destroy --stage S [--aws]
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .commands import ExitWith, LazyParser, stdout_to_stderr
from .stack_cli import add_commands


def _synthetic(args) -> None:
    from .synthetic import generate

    generate(args.out, args.classes, args.per_class, args.size, args.seed)


def _dogimages(args) -> None:
    from .download import DOGIMAGES_URL, download_dogimages

    download_dogimages(args.out, args.url or DOGIMAGES_URL, args.sha256)


def _upload(args) -> None:
    from .s3upload import upload_dir

    upload_dir(args.dir, args.uri)


def _predict(args) -> None:
    from .predict import predict, print_predictions, wait_healthy

    if args.wait:
        wait_healthy(args.endpoint, args.wait)
    print_predictions(predict(args.endpoint, args.image, args.top_k))


def _tune(args) -> None:
    import signal
    import threading

    from .tuning.best import record_best
    from .tuning.local import run_tuning_job
    from .tuning.spec import load_spec
    from .tuning.trial import stop_all

    spec = load_spec(args.spec)
    stopping = threading.Event()

    def stop(signum, frame):
        logging.getLogger("dogops").warning("stopping: the running trials checkpoint; rerun the same "
                                            "command to resume")
        stopping.set()
        stop_all()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    job_dir = args.jobs_dir / args.name
    study = run_tuning_job(spec, args.data, job_dir, args.image, stopping, warm=not args.cold)
    if stopping.is_set():
        raise SystemExit(130)
    image = args.image or "native train (dogops)"
    record_best(study, spec.objective, job_dir, args.output, image)
    print(f"results: {job_dir / 'results.csv'}, {job_dir / 'objective.png'}; best: {job_dir / 'best.json'}")


def _tune_request(args) -> None:
    from .tuning.request import tuning_job_request
    from .tuning.spec import load_spec

    request = tuning_job_request(load_spec(args.spec), args.name, args.image, args.role, args.training, args.output,
                                 args.instance_type)
    print(json.dumps(request, indent=2))


def _deploy(args) -> None:
    from .deploy import deploy_model
    from .tuning.best import load_best

    names = deploy_model(load_best(args.record), args.endpoint_name, args.image, args.instance_type)
    print(json.dumps(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dogops", description="Local-first dev kit for a PyTorch "
                                     "image classifier on AWS.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=LazyParser)
    data = commands.add_parser("data", help="make, fetch and upload data sets").add_subparsers(
        dest="data_command", required=True)

    synthetic = data.add_parser("synthetic", help="generate a learnable data set in the dogImages layout")
    synthetic.add_argument("--out", type=Path, required=True)
    synthetic.add_argument("--classes", type=int, default=10, help="number of breeds (default 10, max 133)")
    synthetic.add_argument("--per-class", type=int, default=30,
                           help="train images per breed; valid and test get a quarter each (default 30)")
    synthetic.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(func=_synthetic)

    dogimages = data.add_parser("dogimages", help="download and unpack Udacity's dogImages (about 1 GB)")
    dogimages.add_argument("--out", type=Path, required=True)
    dogimages.add_argument("--sha256", help="expected sha256 of dogImages.zip (default: the server's ETag)")
    dogimages.add_argument("--url", help=argparse.SUPPRESS)
    dogimages.set_defaults(func=_dogimages)

    upload = data.add_parser("upload", help="upload a folder to S3 (or the emulator), skipping unchanged files")
    upload.add_argument("dir", type=Path)
    upload.add_argument("uri", help="s3://BUCKET/PREFIX")
    upload.set_defaults(func=_upload)

    predict = commands.add_parser("predict", help="classify an image with a running serving container")
    predict.add_argument("image", help="a local image file, or an http(s) URL for the server to fetch")
    predict.add_argument("--endpoint", default="http://127.0.0.1:8080", help="the container's base URL")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--wait", type=float, default=0, help="first wait up to this many seconds for /ping")
    predict.set_defaults(func=_predict)

    tune = commands.add_parser("tune", help="run (or resume) a tuning job locally; record the best model")
    tune.add_argument("--data", type=Path, required=True, help="data in the dogImages layout")
    tune.add_argument("--spec", type=Path, help="tuning spec, YAML or JSON (default: the original project's search)")
    tune.add_argument("--name", default="dogops-tune", help="job name; rerun with the same name to resume")
    tune.add_argument("--jobs-dir", type=Path, default=Path("tuning-jobs"))
    tune.add_argument("--output", help="s3://BUCKET/PREFIX for the best model.tar.gz (needed by deploy)")
    tune.add_argument("--image", help="run trials as `docker run IMAGE train` instead of native `train`")
    tune.add_argument("--cold", action="store_true", help="start each native trial as a fresh `train` process "
                      "instead of forking it from a warm worker (torch imported, cached features loaded)")
    tune.set_defaults(func=_tune)

    request = commands.add_parser("tune-request", help="print the spec as a CreateHyperParameterTuningJob request")
    request.add_argument("--spec", type=Path)
    request.add_argument("--name", default="dogops-tune")
    request.add_argument("--image", required=True, help="training image URI, by digest")
    request.add_argument("--role", required=True, help="SageMaker execution role ARN")
    request.add_argument("--training", required=True, help="s3:// prefix of the training channel")
    request.add_argument("--output", required=True, help="s3:// output path")
    request.add_argument("--instance-type", default="ml.m5.xlarge")
    request.set_defaults(func=_tune_request)

    deploy = commands.add_parser("deploy", help="deploy the current best model as a SageMaker endpoint")
    deploy.add_argument("--endpoint-name", default="dogops")
    deploy.add_argument("--image", default="dogops-serving:dev", help="serving image URI")
    deploy.add_argument("--instance-type", default="ml.m5.large")
    deploy.add_argument("--record", type=Path, default=Path(".dogops/best.json"))
    deploy.set_defaults(func=_deploy)
    add_commands(commands)
    commands.add_parser("promote", help="the stage's image and CloudFormation stack: push, plan, apply; training "
                        "and tuning jobs", add="dogops.promote.cli:add_promote_arguments")
    commands.add_parser("logs", help="print (or follow) the CloudWatch Logs of a training job, an endpoint or a "
                        "Lambda function", add="dogops.logs:add_arguments")
    commands.add_parser("capacity", help="measure one model server's throughput at a p99 objective here; size the "
                        "stage's auto-scaling and cost for a target load", add="dogops.capacity:add_arguments")
    commands.add_parser("destroy", help="delete the stage's stacks (endpoint and function, training); check that "
                        "nothing tagged remains", add="dogops.promote.cli:add_destroy_arguments")
    return parser


def _run(args) -> int:
    """The command; with ``--json``, what it returns as one JSON document on stdout and all it prints on stderr."""
    if not getattr(args, "json", False):
        args.func(args)
        return 0
    code = 0
    with stdout_to_stderr():
        try:
            document = args.func(args)
        except ExitWith as exc:
            document, code = exc.document, exc.code
    print(json.dumps(document, indent=2))
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dogops`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except BrokenPipeError:  # the reader went away (`dogops status | head -1`): stop quietly, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # every command reports failures the same way: one clear line, exit 1
        logging.getLogger("dogops").error("%s: %s", type(exc).__name__, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())

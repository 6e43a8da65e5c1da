"""``dogops promote preflight``: before anything costs money, the template, its IAM policies, the model and the
exact pushed image are checked; any failure stops the promotion before a change set exists.

Static, on the stage's template, its training template and its expiry template: cfn-lint, checkov (the few checks these stacks answer on
purpose are skipped with their reason), and parliament on every IAM policy document with the stage's parameters
substituted (example account; the training stack with its EC2 part and example prefixes and image). The model:
``model.tar.gz`` from S3 has SageMaker's layout (the model files at the top level: they land in /opt/ml/model)
and its manifest verifies. The image: linux/amd64, a Docker schema-2 manifest in the registry, and the digest
itself served locally with that model (``/ping``, one prediction of a photo, cold-start time).

checkov and parliament live in their own venv (``dogops/promote/preflight-tools.txt``, made by ``make setup``):
checkov pins an older boto3 than dogops does.
"""

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from training.archive import ArchiveError, extract, problems, read_members
from training.artifact import CLASSES, CONFIG, MANIFEST, WEIGHTS, verify_artifact

from . import training_stack
from .config import Stage
from .push import SCHEMA2, Docker, check_manifest, check_platform, credentials, docker, login, manifest_type
from .runs import Locations
from .stack import EXPIRY_TEMPLATE, TEMPLATE, download, parameters

EXAMPLE_ACCOUNT = "123456789012"
EXAMPLE_TRAINING = Locations("s3://example-bucket/data", "s3://example-bucket/training",
                             "s3://example-bucket/checkpoints")
REQUIRED = (WEIGHTS, CLASSES, CONFIG, MANIFEST)
# checkov checks this stack fails on purpose, and why (printed with every run).
SKIPPED = {
    "CKV_AWS_158": "log groups use CloudWatch Logs' default encryption at rest, not a customer KMS key ($1/month each)",
    "CKV_AWS_370": "no SageMaker network isolation: the endpoint fetches photos by URL ({\"url\": ...})",
    "CKV_AWS_116": "no dead-letter queue: the function is only invoked synchronously (its function URL)",
    "CKV_AWS_117": "the function is not in a VPC: it calls the SageMaker Runtime's public endpoint, no NAT to pay",
    "CKV_AWS_173": "the function's one variable (ENDPOINT_NAME) is no secret; Lambda encrypts it at rest by default",
}
# A resource's name property and ARN, for policies that name a resource of the template by Ref or GetAtt.
ARNS = {
    "AWS::Logs::LogGroup": ("LogGroupName", "arn:{p}:logs:{r}:{a}:log-group:{n}:*"),
    "AWS::SageMaker::Endpoint": ("EndpointName", "arn:{p}:sagemaker:{r}:{a}:endpoint/{n}"),
    "AWS::Lambda::Function": ("FunctionName", "arn:{p}:lambda:{r}:{a}:function:{n}"),
    "AWS::IAM::Role": ("RoleName", "arn:{p}:iam::{a}:role/{n}"),
}


class PreflightFailed(RuntimeError):
    """One or more checks failed; the message lists them."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        return f"  {'✓' if self.ok else '✗'} {self.name:<15} {self.seconds:6.1f} s  {self.detail}"


def tool(name: str) -> Path:
    """A checker from the preflight venv (``DOGOPS_PREFLIGHT_TOOLS``, else ``<venv>/preflight/bin``)."""
    folder = Path(os.environ.get("DOGOPS_PREFLIGHT_TOOLS") or Path(sys.prefix) / "preflight" / "bin")
    path = folder / name
    if not path.exists():
        raise PreflightFailed(f"{name} is not installed at {path}: `make setup` installs it "
                              f"(pip install -r dogops/promote/preflight-tools.txt into {folder.parent})")
    return path


def cfn_lint(text: str, region: str) -> list[str]:
    """cfn-lint's findings (errors, warnings) for the template, in ``region``."""
    from cfnlint.api import lint

    logging.getLogger("cfnlint").setLevel(logging.WARNING)  # not its "Run scan of template" line
    return [str(match) for match in lint(text, regions=[region])]


def checkov(path: Path) -> tuple[list[str], int]:
    """checkov's failed CloudFormation checks (less ``SKIPPED``) and how many passed.

    Run in the template's folder on its bare name: checkov keeps the path it was given inside each resource's
    environment variables, and CKV_AWS_45 reads an absolute path whose letters and slashes run to 40 characters
    as an AWS secret key. ``--skip-download``: nothing is fetched from Prisma Cloud.
    """
    result = subprocess.run([str(tool("checkov").absolute()), "--file", path.name, "--framework", "cloudformation",
                             "--output", "json", "--quiet", "--compact", "--skip-download",
                             "--skip-check", ",".join(SKIPPED)],
                            capture_output=True, text=True, timeout=300, cwd=path.parent)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise PreflightFailed(f"checkov failed ({result.returncode}): {result.stderr.strip()[-2000:]}") from None
    report = report[0] if isinstance(report, list) else report
    if "results" not in report:  # nothing it could parse as a template
        return [f"checkov found no CloudFormation resources in {path}"], 0
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    failed += [f"cannot parse {p}" for p in report["results"].get("parsing_errors", [])]
    return failed, report["summary"]["passed"]


def load_template(text: str) -> dict:
    """The template as data (CloudFormation's short forms such as ``!Sub`` become ``Fn::Sub``), by cfn-lint."""
    from cfnlint.decode import decode_str

    template, errors = decode_str(text)
    if errors:
        raise PreflightFailed(f"the template does not parse: {'; '.join(map(str, errors))}")
    return template


NO_VALUE = object()  # ``Ref AWS::NoValue``: the property or list item is left out


def _resolver(template: dict, names: dict):
    """Two functions: one that evaluates Ref, Fn::Sub, Fn::GetAtt (ARNs), Fn::Join and Fn::If with ``names`` as
    parameters, and one that tells whether a condition of the template holds (Fn::Equals, Not, And, Or)."""
    resources, conditions = template.get("Resources", {}), template.get("Conditions", {})

    def holds(condition) -> bool:
        if isinstance(condition, str):
            return holds(conditions[condition])
        (fn, arg), = condition.items()
        if fn == "Condition":
            return holds(arg)
        if fn == "Fn::Equals":
            return resolve(arg[0]) == resolve(arg[1])
        if fn == "Fn::Not":
            return not holds(arg[0])
        if fn in ("Fn::And", "Fn::Or"):
            return (all if fn == "Fn::And" else any)(holds(c) for c in arg)
        raise PreflightFailed(f"cannot evaluate the condition {condition}")

    def lookup(name: str) -> str:
        if name in names:
            return names[name]
        logical, _, attribute = name.partition(".")
        if logical in resources and resources[logical]["Type"] in ARNS:
            kind = resources[logical]["Type"]
            prop, arn = ARNS[kind]
            value = resolve(resources[logical].get("Properties", {}).get(prop, logical))
            if not attribute:
                return value
            if attribute == "Arn":
                return arn.format(p=names["AWS::Partition"], r=names["AWS::Region"], a=names["AWS::AccountId"],
                                  n=value)
        raise PreflightFailed(f"cannot give {name} a concrete value to check the IAM policies with")

    def resolve(value):
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else lookup(arg)
            if fn == "Fn::If":
                return resolve(arg[1] if holds(arg[0]) else arg[2])
            if fn == "Fn::GetAtt":
                return lookup(".".join(arg) if isinstance(arg, list) else arg)
            if fn == "Fn::Join":
                return arg[0].join(resolve(part) for part in resolve(arg[1]))
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], {k: resolve(v) for k, v in arg[1].items()})
                return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: extra.get(m[1]) or lookup(m[1]), text)
        if isinstance(value, dict):
            return {key: item for key, item in ((k, resolve(v)) for k, v in value.items()) if item is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in map(resolve, value) if item is not NO_VALUE]
        return value

    return resolve, holds


def policy_documents(template: dict, params: dict, region: str, account: str = EXAMPLE_ACCOUNT) -> dict[str, dict]:
    """Every identity policy of the template's resources that ``params`` create (roles' inline policies, IAM
    policies), as concrete JSON documents."""
    names = {**params, "AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account,
             "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": f"{params.get('Project')}-{params.get('Stage')}"}
    resolve, holds = _resolver(template, names)
    documents = {}
    for logical, resource in template.get("Resources", {}).items():
        if "Condition" in resource and not holds(resource["Condition"]):
            continue
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            for policy in props.get("Policies", []):
                documents[f"{logical}/{policy['PolicyName']}"] = resolve(policy["PolicyDocument"])
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            documents[logical] = resolve(props["PolicyDocument"])
    return documents


def parliament(documents: dict[str, dict]) -> list[str]:
    """parliament's findings (any severity) for each document."""
    findings = []
    for name, document in documents.items():
        result = subprocess.run([str(tool("parliament")), "--json"], input=json.dumps(document), capture_output=True,
                                text=True, timeout=120)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 and not lines:
            raise PreflightFailed(f"parliament failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        findings += [f"{name}: {f['issue']} ({f['severity']}, {f['title']}): {_brief(f['detail'])}" for f in lines]
    return findings


def _brief(detail) -> str:
    if not isinstance(detail, list):
        return str(detail)
    return ", ".join(map(str, detail[:3])) + (f" and {len(detail) - 3} more" if len(detail) > 3 else "")


def layout_problems(model_tar: Path) -> list[str]:
    """What keeps ``model_tar`` from landing in /opt/ml/model as serving loads it (member headers only): what
    ``training.archive`` refuses to extract, and a required file not at the top level."""
    try:
        members = read_members(model_tar)
    except ArchiveError as exc:
        return [str(exc)]
    found = problems(members)
    paths = [PurePosixPath(*[part for part in PurePosixPath(m.name).parts if part not in (".", "/")] or ["."])
             for m in members]
    top = {str(p) for p in paths if len(p.parts) == 1}
    for name in REQUIRED:
        if name not in top:
            nested = next((str(p) for p in paths if p.name == name), None)
            found.append(f"no {name} at the top level" + (
                f" (it is at {nested}: pack the folder's contents, `tar -czf model.tar.gz -C DIR .`)" if nested else ""))
    return found


def check_model(model_tar: Path, into: Path) -> str:
    """The layout, then the extraction serving and hosting do (``training.archive``) and the manifest's sha256s."""
    found = layout_problems(model_tar)
    if found:
        raise PreflightFailed("; ".join(found))
    config = verify_artifact(extract(model_tar, into))
    return (f"{model_tar.stat().st_size / 2**20:.1f} MiB, {', '.join(REQUIRED)} at the top; manifest verified; "
            f"{config['backbone']} {config['image_size']} px, {config['num_classes']} classes")


def pull(image: str, session, docker: Docker) -> str:
    """Log in to the image's registry with ECR's token, pull ``image`` unless it is here; return what was done."""
    login(session.client("ecr"), image, docker)
    host = image.partition("/")[0]
    try:
        docker("image", "inspect", "--format", "{{.Id}}", image)
        return f"logged in to {host}; the digest is here already"
    except RuntimeError:
        docker("pull", image)
        return f"logged in to {host}; pulled the digest"


def media_type(image: str, session) -> str:
    """The manifest media type the registry stores for ``image`` (REGISTRY/REPO@sha256:...)."""
    endpoint, user, password = credentials(session.client("ecr"))
    repository, _, digest = image.partition("/")[2].partition("@")
    return manifest_type(endpoint, repository, digest, (user, password))


def serve_once(image: str, model_dir: Path, name: str, docker: Docker = docker) -> str:
    """Run ``image`` with the model as SageMaker would, ``/ping`` it, classify one photo; always removed after."""
    import requests

    from services.hosting.containers import run_model

    from ..predict import predict
    from ..samples import write_samples

    hosted = run_model(image, model_dir, name)
    try:
        ping = requests.get(f"{hosted.url}/ping", timeout=5).status_code
        if ping != 200:
            raise PreflightFailed(f"/ping answered {ping}")
        with tempfile.TemporaryDirectory() as tmp:
            photo = Path(tmp) / write_samples(Path(tmp), classes=1)[0]
            started = time.monotonic()
            best = predict(hosted.url, str(photo), top_k=1)[0]
            took = time.monotonic() - started
        return (f"/ping 200 after a {hosted.ready_s:.1f} s cold start; {photo.name}: {best['breed']} "
                f"{best['probability']:.0%} in {took * 1000:.0f} ms")
    finally:
        docker("rm", "-f", hosted.container)


def _timed(name: str, checks: list[Check], echo, work) -> object:
    started = time.monotonic()
    try:
        result = work()
        detail, ok = (result if isinstance(result, str) else "ok"), True
    except Exception as exc:  # each check reports its own failure; the run goes on to the next independent one
        result, detail, ok = None, str(exc), False
    checks.append(Check(name, ok, detail, time.monotonic() - started))
    echo(checks[-1].line())
    return result if ok else None


def example_training_parameters(stage: Stage) -> dict[str, str]:
    """The training template's parameters for the static checks: every resource (the EC2 part too), example
    prefixes and the stage's training repository in the example account."""
    image = f"{EXAMPLE_ACCOUNT}.dkr.ecr.{stage.region}.amazonaws.com/{stage.stack_name}/training@sha256:" + "0" * 64
    return training_stack.parameters(stage, EXAMPLE_TRAINING, image, EXAMPLE_ACCOUNT, 30, stage.expires_at(),
                                     training_stack.Ec2Access("vpc-0123456789abcdef0"))


def static_checks(templates: list[tuple[Path, dict]], region: str, echo=print) -> list[Check]:
    """cfn-lint, checkov and parliament on each template (with its parameters); each check printed as it ends."""
    checks: list[Check] = []
    names = ", ".join(path.name for path, _ in templates)

    def lint():
        found = [f"{path.name}: {m}" for path, _ in templates for m in cfn_lint(path.read_text(), region)]
        if found:
            raise PreflightFailed("; ".join(found))
        return f"{names}: no findings"

    def ckv():
        failed, passed = [], 0
        for path, _ in templates:
            found, count = checkov(path)
            failed, passed = failed + [f"{path.name}: {f}" for f in found], passed + count
        if failed:
            raise PreflightFailed("; ".join(failed))
        return f"{passed} checks passed, {len(SKIPPED)} skipped on purpose ({', '.join(SKIPPED)})"

    def iam():
        documents = {name: document for path, params in templates
                     for name, document in policy_documents(load_template(path.read_text()), params, region).items()}
        found = parliament(documents)
        if found:
            raise PreflightFailed("; ".join(found))
        return f"{len(documents)} policies, no findings ({', '.join(documents)})"

    for name, work in (("cfn-lint", lint), ("checkov", ckv), ("parliament", iam)):
        _timed(name, checks, echo, work)
    return checks


def preflight(stage: Stage, image: str, model_data_url: str, session, echo=print, docker: Docker = docker,
              template: Path = TEMPLATE, model_tar: Path | None = None) -> list[Check]:
    """Every check, printed as it ends; raise ``PreflightFailed`` naming the failed ones. The model checked is
    ``model_tar`` (``promote apply`` passes the download it pins), else ``model_data_url`` downloaded here."""
    echo(f"preflight {stage.stack_name}: {image}\n  model {model_data_url}")
    params = parameters(stage, image, model_data_url, f"{stage.project}/lambda/function.zip", stage.expires_at())
    checks = static_checks([(template, params), (training_stack.TEMPLATE, example_training_parameters(stage)),
                            (EXPIRY_TEMPLATE, {"Project": stage.project, "Stage": stage.name})], stage.region, echo)
    with tempfile.TemporaryDirectory(prefix="dogops-preflight-") as tmp:
        model_dir = Path(tmp) / "model"
        _timed("model.tar.gz", checks, echo, lambda: check_model(
            model_tar or download(session, model_data_url, Path(tmp)), model_dir))
        if _timed("registry", checks, echo, lambda: pull(image, session, docker)):
            _timed("manifest", checks, echo, lambda: check_manifest(image, media_type(image, session))
                   or f"{SCHEMA2} (Docker schema 2)")
            _timed("platform", checks, echo, lambda: check_platform(image, docker) or "linux/amd64")
        if all(c.ok for c in checks):
            name = f"dogops-preflight-{stage.stack_name}-{uuid.uuid4().hex[:8]}"
            _timed("container", checks, echo, lambda: serve_once(image, model_dir, name, docker))
        else:
            echo("  - container       (not run: an earlier check failed)")
    failed = [c for c in checks if not c.ok]
    if failed:
        raise PreflightFailed(f"preflight failed ({', '.join(c.name for c in failed)}): nothing was deployed")
    echo(f"preflight passed: {len(checks)} checks")
    return checks

"""The promote preflight: the static checks (cfn-lint, checkov, parliament) on the real templates (the stage's and
its training stack's) and on a loosened one, the model.tar.gz layout, and — with Docker and the built images — the pushed digest served with
a trained model."""

import hashlib
import io
import json
import re
import shutil
import tarfile

import pytest

from dogops.promote import preflight as pre
from dogops.promote.config import load_stage
from dogops.promote.stack import EXPIRY_TEMPLATE, TEMPLATE, parameters
from dogops.promote.training_stack import TEMPLATE as TRAINING

from ..conftest import tarball

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/serving@sha256:" + "a" * 64
MODEL = "s3://dogops-models/runs/7/model.tar.gz"


@pytest.fixture(scope="module")
def params():
    dev = load_stage("dev")
    return parameters(dev, IMAGE, MODEL, "dogops/lambda/function.zip", dev.expires_at())


def test_the_templates_pass_cfn_lint_checkov_and_parliament(params):
    lines = []
    training = pre.example_training_parameters(load_stage("dev"))
    expiry = {"Project": "dogops", "Stage": "dev"}
    checks = pre.static_checks([(TEMPLATE, params), (TRAINING, training), (EXPIRY_TEMPLATE, expiry)], "us-east-1",
                               lines.append)
    assert [(c.name, c.ok) for c in checks] == [("cfn-lint", True), ("checkov", True), ("parliament", True)], lines
    assert checks[0].detail == "template.yaml, training.yaml, expiry.yaml: no findings"
    assert "skipped on purpose" in checks[1].detail and "7 policies, no findings" in checks[2].detail
    for policy in ("TrainingJobsRole/training-logs-metrics", "DataModelImagePolicy", "Ec2Role/ec2-training-logs-ssm",
                   "ExpiryScheduleRole/delete-the-stage-stack", "StackDeleterRole/delete-the-stage-resources"):
        assert policy in checks[2].detail
    assert all(line.startswith("  ✓ ") for line in lines)


def test_the_training_policies_are_checked_with_concrete_arns():
    documents = pre.policy_documents(pre.load_template(TRAINING.read_text()),
                                     pre.example_training_parameters(load_stage("dev")), "us-east-1")
    shared = {s["Sid"]: s for s in documents["DataModelImagePolicy"]["Statement"]}
    assert shared["ReadTheData"]["Resource"] == "arn:aws:s3:::example-bucket/data/*"
    assert shared["PullTheImage"]["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/dogops-dev/training"
    logs = documents["Ec2Role/ec2-training-logs-ssm"]["Statement"][0]
    assert logs["Resource"] == ["arn:aws:logs:us-east-1:123456789012:log-group:/dogops/dogops-dev/ec2-training",
                                "arn:aws:logs:us-east-1:123456789012:log-group:/dogops/dogops-dev/ec2-training:*"]


def test_checkov_does_not_take_the_template_s_path_for_a_secret(tmp_path):
    # checkov keeps the path it is given among the function's environment variables, and to CKV_AWS_45 a path
    # whose letters and slashes run to 40 characters is an AWS secret key (a clean clone's CI failed so).
    tail = re.findall(r"[A-Za-z0-9/+=]+", str(tmp_path))[-1]
    folder = tmp_path / ("a" * (40 - len(f"{tail}//template")))
    folder.mkdir()
    shutil.copy(TEMPLATE, folder / "template.yaml")
    assert len(re.findall(r"[A-Za-z0-9/+=]+", str(folder / "template"))[-1]) == 40
    assert pre.checkov(folder / "template.yaml") == ([], pre.checkov(TEMPLATE)[1])


def test_the_policies_are_checked_with_concrete_arns(params):
    documents = pre.policy_documents(pre.load_template(TEMPLATE.read_text()), params, "us-east-1")
    function = documents["FunctionRole/invoke-endpoint-and-log"]["Statement"]
    assert function[0]["Resource"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogops-dev"
    assert function[1]["Resource"] == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/dogops-dev-predict:*"
    model = documents["SageMakerRole/model-image-logs"]["Statement"]
    assert model[0]["Resource"] == "arn:aws:s3:::dogops-models/runs/7/model.tar.gz"
    assert model[1]["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/dogops-dev/serving"


def test_a_wildcard_action_and_resource_fail_checkov_and_parliament(params, tmp_path):
    loose = re.sub(r"Action: sagemaker:InvokeEndpoint\n(\s+)Resource: .*", r'Action: "sagemaker:*"\n\1Resource: "*"',
                   TEMPLATE.read_text())
    assert loose != TEMPLATE.read_text()
    (tmp_path / "template.yaml").write_text(loose)
    lines = []
    checks = {c.name: c for c in pre.static_checks([(tmp_path / "template.yaml", params)], "us-east-1", lines.append)}
    assert checks["cfn-lint"].ok  # valid CloudFormation, just too broad
    assert not checks["checkov"].ok and "CKV_AWS_111 AWS::IAM::Role.FunctionRole" in checks["checkov"].detail
    assert not checks["parliament"].ok
    assert "FunctionRole/invoke-endpoint-and-log: RESOURCE_STAR" in checks["parliament"].detail
    assert "template.yaml: CKV_AWS_111" in checks["checkov"].detail
    assert sum(line.startswith("  ✗ ") for line in lines) == 2


def _model_dir(root):
    """A model folder that passes ``verify_artifact`` (the bytes need not be a real network)."""
    root.mkdir()
    files = {"model.pth": b"weights", "classes.json": b'["001.Affenpinscher"]', "metrics.json": b"{}",
             "model_config.json": json.dumps({"backbone": "efficientnet_lite0", "image_size": 64,
                                              "num_classes": 1}).encode()}
    for name, body in files.items():
        (root / name).write_bytes(body)
    (root / "manifest.json").write_text(json.dumps({"format": "dogops-model/1", "files": {
        name: {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)} for name, body in files.items()}}))
    return root


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def test_a_model_tar_gz_in_sagemaker_s_layout_passes(tmp_path):
    good = tmp_path / "model.tar.gz"
    good.write_bytes(tarball(_model_dir(tmp_path / "model")))
    assert pre.layout_problems(good) == []
    assert "manifest verified" in pre.check_model(good, tmp_path / "extracted")


def test_a_bad_model_layout_is_refused_with_the_reason(tmp_path):
    folder = _model_dir(tmp_path / "model")
    nested = _tar(tmp_path / "nested.tar.gz", {f"model/{p.name}": p.read_bytes() for p in folder.iterdir()})
    problems = pre.layout_problems(nested)
    assert "no model.pth at the top level (it is at model/model.pth" in problems[0] and len(problems) == 4
    with pytest.raises(pre.PreflightFailed, match="no manifest.json at the top level"):
        pre.check_model(nested, tmp_path / "out")
    escaping = _tar(tmp_path / "escaping.tar.gz", {"../model.pth": b"x"})
    assert "'../model.pth' would land outside the model directory" in pre.layout_problems(escaping)[0]
    (tmp_path / "plain.tar.gz").write_bytes(b"not a tar")
    assert pre.layout_problems(tmp_path / "plain.tar.gz")[0].startswith("not a gzip-compressed tar")
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    (tampered / "model.pth").write_bytes(b"other weights")
    (tmp_path / "tampered.tar.gz").write_bytes(tarball(tampered))
    with pytest.raises(ValueError, match="does not match its sha256"):
        pre.check_model(tmp_path / "tampered.tar.gz", tmp_path / "out2")


# The container checks (registry, manifest, platform, the digest served with the model) run on a pushed digest in
# the compose suite's promotion rehearsal (integration_tests/test_promote_rehearsal.py): one 6 GB push, not two.

"""promote.yaml's ``limits:``: a stage, a training run or a tuning job above a limit is refused by the command before
any call to AWS (the endpoint set here is unreachable: a call would fail otherwise), naming the value, the limit and
how to raise it; raised in promote.yaml, the same value passes the check."""

import pytest
import yaml

from dogops.promote.config import CONFIG, connect, load_stage, stage_limits
from dogops.promote.limits import DEFAULTS, LimitExceeded, check, load_limits

from ..conftest import run_script, script_env

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/training@sha256:" + "e" * 64
NOWHERE = script_env(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")


def _config(tmp_path, edit) -> str:
    config = yaml.safe_load(CONFIG.read_text())
    edit(config)
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_promote_yaml_states_every_limit_with_its_default():
    assert load_limits(CONFIG) == DEFAULTS and set(yaml.safe_load(CONFIG.read_text())["limits"]) == set(DEFAULTS)
    check(CONFIG, stage_limits(load_stage("dev")))  # the shipped stages are within them
    check(CONFIG, stage_limits(load_stage("prod")))


@pytest.mark.parametrize(("edit", "args", "message"), [
    (lambda c: c["stages"]["dev"]["autoscaling"].update(max=12), ("plan", "--image", IMAGE),
     "stages.dev.autoscaling.max is 12, above limits.endpoint_max_instances = 4"),
    (lambda c: c["stages"]["dev"].update(ttl_hours=2000), ("apply", "--image", IMAGE, "--yes"),
     "stages.dev.ttl_hours is 2000, above limits.ttl_hours = 720"),
    (lambda c: c["training"].update(max_run_s=200000), ("train", "--image", IMAGE),
     "training.max_run_s is 200000, above limits.max_run_s = 86400"),
    (lambda c: c["training"].update(max_wait_s=400000), ("train", "--image", IMAGE, "--spot"),
     "training.max_wait_s is 400000, above limits.max_wait_s = 172800"),
    (lambda c: None, ("train", "--image", IMAGE, "--instances", "8"), "--instances is 8, above limits.training_instances = 2"),
    (lambda c: None, ("train", "--image", IMAGE, "--ec2", "--max-interruptions", "9"),
     "--max-interruptions is 9, above limits.ec2_max_interruptions = 3"),
    (lambda c: c["limits"].update(tuning_max_jobs=4), ("tune", "--image", IMAGE),
     "the spec's ResourceLimits.MaxNumberOfTrainingJobs is 8, above limits.tuning_max_jobs = 4"),
])
def test_a_value_above_its_limit_is_refused_before_any_call(tmp_path, edit, args, message):
    path = _config(tmp_path, edit)
    result = run_script("dogops", "promote", args[0], "--stage", "dev", "--config", path, *args[1:], env=NOWHERE)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "refused before touching AWS" in result.stderr and f"under `limits:` in {path}" in result.stderr
    assert "target" not in result.stderr.lower()  # nothing resolved, let alone called


def test_a_raised_limit_lets_the_value_through_and_destroy_is_never_limited(tmp_path):
    def raise_it(config):
        config["stages"]["dev"]["autoscaling"].update(max=12)
        config["limits"]["endpoint_max_instances"] = 12
    check(_config(tmp_path, raise_it), stage_limits(load_stage("dev", _config(tmp_path, raise_it))))
    over = _config(tmp_path, lambda c: c["stages"]["dev"]["autoscaling"].update(max=12))
    with pytest.raises(LimitExceeded):
        connect("dev", over, aws=False)
    result = run_script("dogops", "destroy", "--stage", "dev", "--config", over, env=NOWHERE)
    assert "above limits" not in result.stderr  # it went on to reach for the (unreachable) endpoint


@pytest.mark.parametrize(("limits", "error"), [({"max_run": 5}, "unknown limits max_run"),
                                               ({"max_run_s": "lots"}, "limits.max_run_s must be a positive number")])
def test_a_bad_limits_block_is_an_error(tmp_path, limits, error):
    with pytest.raises(ValueError, match=error):
        load_limits(_config(tmp_path, lambda c: c.update(limits=limits)))


def test_a_ttl_too_short_for_the_schedule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ttl_hours must be at least 0.25"):
        load_stage("dev", _config(tmp_path, lambda c: c["stages"]["dev"].update(ttl_hours=0.01)))

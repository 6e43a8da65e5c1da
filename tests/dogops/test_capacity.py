"""``dogops capacity`` (the real console script) on the small trained model: a plan consistent with its own
measurement, the plot, ``--write`` into a copy of promote.yaml that keeps every other line, and clear errors."""

import itertools
import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from dogops.capacity import write_stage
from dogops.capacity_load import MIN_STEP_REQUESTS
from dogops.promote.config import load_stage
from dogops.promote.prices import load_prices

from ..conftest import run_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "promote.yaml"
    shutil.copy(ROOT / "promote.yaml", path)
    return path


@pytest.mark.slow  # two servers started, about 20 s of load; more on a loaded machine
def test_plan_follows_from_its_own_measurement_and_write_round_trips(trained, data_dir, config, tmp_path):
    model_dir, _ = trained
    plot = tmp_path / "capacity.png"
    before = config.read_text().splitlines()
    result = run_script("dogops", "capacity", "--stage", "dev", "--rps", "0.3", "--config", config, "--model",
                        model_dir, "--images", data_dir / "test", "--p99-ms", "60000", "--step-s", "1",
                        "--max-steps", "3", "--plot", plot, "--write", "--json", timeout=240)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    measured, plan = doc["measured"], doc["plan"]
    steps = measured["steps"]
    within = list(itertools.takewhile(lambda s: s["errors"] == 0 and s["p99_ms"] <= 60000
                                      and s["offered_rps"] <= measured["all_cpus_rps"], steps))
    assert len(steps) == 3 and within and measured["sustainable_rps"] == within[-1]["offered_rps"]
    assert measured["cores"] == os.cpu_count() and measured["one_cpu_rps"] > 0 and measured["all_cpus_rps"] > 0
    for s in steps:  # open loop at fractions of the closed-loop saturation, every request answered or counted
        assert s["sent"] == max(MIN_STEP_REQUESTS, round(s["offered_rps"])) and s["p50_ms"] <= s["p99_ms"]
    vcpus = load_prices()["sagemaker_instance_vcpus"]["ml.m5.large"]
    assert plan["per_instance_rps"] == pytest.approx(measured["sustainable_rps"] * vcpus / measured["cores"])
    target = plan["target_invocations_per_instance"]
    assert target == max(1, math.floor(plan["per_instance_rps"] * 60 * 0.5))
    assert plan["max"] * target / 60 >= 0.3 and (plan["max"] - 1) * target / 60 < 0.3 or plan["max"] == plan["min"]
    assert plan["min"] * plan["per_instance_rps"] >= 0.3 and plan["min"] <= plan["max"]
    assert doc["cost_per_hour"]["endpoint_max"] == pytest.approx(plan["max"] * 0.115)
    # The printed table says what the document says.
    assert f"sustainable at p99 <= 60000 ms: {measured['sustainable_rps']:.2f} req/s" in result.stderr
    assert f"SageMakerVariantInvocationsPerInstance = {target} per minute" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and doc["plot"] == str(plot)
    # --write: the stage reads back with the plan, every other line as it was.
    stage = load_stage("dev", config)
    assert (stage.min_capacity, stage.max_capacity, stage.target_invocations) == (plan["min"], plan["max"], target)
    assert yaml.safe_load(config.read_text())["stages"]["dev"]["autoscaling"]["p99_ms"] == 60000
    after = config.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1 and "autoscaling:" in changed[0][1]


def test_write_refuses_what_it_cannot_update_in_place(config):
    with pytest.raises(ValueError, match="no stage 'qa'"):
        write_stage(config, "qa", {"min": 1})
    config.write_text(re.sub(r"autoscaling: \{min: 1, max: 2, target_invocations_per_instance: \d+, p99_ms: 500\}",
                             "autoscaling:\n      min: 1\n      max: 2\n      target_invocations_per_instance: 5",
                             config.read_text()))
    text = config.read_text()
    with pytest.raises(ValueError, match=re.escape("no one-line `autoscaling: {...}`")):
        write_stage(config, "dev", {"min": 2})
    assert config.read_text() == text


@pytest.mark.parametrize("flags, message", [
    (["--stage", "dev"], "the following arguments are required: --rps"),
    (["--stage", "dev", "--rps", "0"], "argument --rps: must be above 0, not 0"),
    (["--stage", "dev", "--rps", "x"], "argument --rps: not a number: 'x'"),
    (["--stage", "dev", "--rps", "5", "--headroom", "1.5"], "argument --headroom: must be in (0, 1], not 1.5"),
    (["--stage", "dev", "--rps", "5", "--max-steps", "0"], "argument --max-steps: must be above 0, not 0"),
    (["--stage", "qa", "--rps", "5"], "no stage 'qa'"),
    (["--stage", "dev", "--rps", "5", "--model", "/nonexistent/model", "--images", "/nonexistent"],
     "no .jpg/.jpeg/.png images under /nonexistent"),
])
def test_bad_flags_are_one_clear_line(flags, message, config):
    result = run_script("dogops", "capacity", "--config", config, *flags, timeout=60)
    assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_model_is_named(config, data_dir):
    result = run_script("dogops", "capacity", "--config", config, "--stage", "dev", "--rps", "5", "--model",
                        "/nonexistent/model", "--images", data_dir / "test", timeout=60)
    assert result.returncode == 1 and "no model at /nonexistent/model" in result.stderr, result.stderr


@pytest.mark.slow  # two short measurements
def test_no_plan_without_a_step_in_the_objective_and_none_written_past_the_limits(trained, data_dir, config,
                                                                                tmp_path):
    model_dir, _ = trained
    before = config.read_text()
    common = ["dogops", "capacity", "--stage", "dev", "--config", config, "--model", model_dir, "--images",
              data_dir / "test", "--step-s", "1", "--max-steps", "1", "--plot", tmp_path / "c.png", "--write"]
    impossible = run_script(*common, "--rps", "1", "--p99-ms", "0.001", timeout=240)
    assert impossible.returncode == 1, impossible.stderr
    assert "no load meets p99 <= 0.001 ms: at " in impossible.stderr and "raise --p99-ms" in impossible.stderr
    too_big = run_script(*common, "--rps", "100000", "--p99-ms", "60000", timeout=240)
    assert too_big.returncode == 1, too_big.stderr
    assert re.search(r"stages\.dev\.autoscaling\.max is \d+, above limits\.endpoint_max_instances = 4",
                     too_big.stderr), too_big.stderr
    assert "wrote" not in too_big.stdout and config.read_text() == before  # printed, not written

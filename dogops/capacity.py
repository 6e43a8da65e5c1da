"""``dogops capacity``: one model-server instance's sustainable throughput at a p99 latency objective, measured here
with the real model, and the stage's auto-scaling and cost for a target load (optionally written to ``promote.yaml``).

The measurement (``capacity_load``): ``serve`` with its defaults (a worker per core) saturated by a closed loop to
find the range, then offered open-loop steps at fractions of that; the sustainable throughput is the highest step
whose p99 meets the objective with no error and whose answers keep up with what was offered. A second, pinned run
(one worker on one CPU) shows how throughput grows with cores, the measurement the scaling to the instance's vCPUs
rests on.
"""

import argparse
import itertools
import math
import os
import re
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from .capacity_load import Step, offer, read_images, running_server, saturate, warm
from .commands import json_flag
from .promote.config import CONFIG, load_stage, stage_limits
from .promote.limits import check

DEFAULT_P99_MS = 500.0  # when the stage's autoscaling names no p99_ms
# AWS's load-testing guidance for SageMakerVariantInvocationsPerInstance: max RPS x safety factor (0.5) x 60.
DEFAULT_HEADROOM = 0.5
FRACTIONS = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)  # of the closed-loop saturation rate


def meets(step: Step, p99_ms: float, ceiling_rps: float) -> bool:
    """Whether a step is sustainable: no error, p99 within the objective, and offered at most the closed loop's
    rate (above it the queue only grows: a short step may stay within a loose objective, a long one would not)."""
    return step.errors == 0 and step.p99_ms <= p99_ms and step.offered_rps <= ceiling_rps


def measure(model: Path, bodies: list[bytes], p99_ms: float, step_s: float, max_steps: int) -> dict:
    """The pinned one-CPU saturation, the whole machine's, and the open-loop steps (all of them, so the plot shows
    the whole curve); the sustainable rate is the highest step below the first that fails."""
    cores = os.cpu_count() or 1
    with running_server(model, workers=1, cpus={min(os.sched_getaffinity(0))}) as url:
        warm(url, bodies, 2)
        one_cpu = saturate(url, bodies, 2, step_s)
    with running_server(model) as url:
        warm(url, bodies, 2 * cores)
        all_cpus = saturate(url, bodies, 2 * cores, step_s)
        if not all_cpus > 0:
            raise RuntimeError("the server answered no request of the closed loop")
        steps = [offer(url, bodies, all_cpus * fraction, step_s) for fraction in FRACTIONS[:max_steps]]
    passing = [s.offered_rps for s in itertools.takewhile(lambda s: meets(s, p99_ms, all_cpus), steps)]
    return {"cores": cores, "cpu": _cpu_model(), "one_cpu_rps": one_cpu, "all_cpus_rps": all_cpus,
            "steps": steps, "sustainable_rps": max(passing, default=None), "p99_ms": p99_ms}


def plan(measured: dict, rps: float, vcpus: int, headroom: float) -> dict:
    """The instance's throughput (linear in vCPUs from this machine's), the target-tracking value per minute, and
    the min (the objective holds at ``rps`` before any scale-out) and max (where target tracking settles at ``rps``)
    instance counts."""
    per_instance = measured["sustainable_rps"] * vcpus / measured["cores"]
    target = max(1, math.floor(per_instance * 60 * headroom))
    low = max(1, math.ceil(rps / per_instance))
    return {"per_instance_rps": per_instance, "target_invocations_per_instance": target, "min": low,
            "max": max(low, math.ceil(rps * 60 / target)), "rps": rps, "headroom": headroom, "vcpus": vcpus}


def report_measurement(measured: dict) -> str:
    """The saturation runs and the open-loop steps, as lines."""
    m = measured
    lines = [f"measured here: {m['cores']} CPUs ({m['cpu']}), one `serve` with its default workers (one per CPU)",
             f"  closed-loop saturation: 1 CPU (1 worker, pinned) {m['one_cpu_rps']:.2f} req/s; {m['cores']} CPUs "
             f"{m['all_cpus_rps']:.2f} req/s ({m['all_cpus_rps'] / max(m['one_cpu_rps'], 1e-9):.2f}x, linear "
             f"would be {m['cores']}x)",
             "  open loop, each step the same duration:",
             f"  {'offered req/s':>14} {'answered req/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  within"]
    for s in m["steps"]:
        lines.append(f"  {s.offered_rps:>14.2f} {s.achieved_rps:>15.2f} {s.p50_ms:>8.1f} {s.p99_ms:>8.1f} "
                     f"{s.errors:>7}  {'yes' if meets(s, m['p99_ms'], m['all_cpus_rps']) else 'no'}")
    return "\n".join(lines)


def report(measured: dict, result: dict, stage, cost: dict) -> str:
    """The sustainable rate, the scaling assumption, the plan and its cost, as lines."""
    from .promote.prices import format_estimate  # imports boto3: when the command runs, not for its --help

    m, r = measured, result
    lines = [f"  sustainable at p99 <= {m['p99_ms']:g} ms: {m['sustainable_rps']:.2f} req/s",
             f"assumption: throughput grows linearly with vCPUs (serve runs a worker per vCPU, as SageMaker's "
              f"containers do) and one of this machine's CPUs does the work of one vCPU of {stage.instance_type} "
              f"(the CPU models are not compared): {r['vcpus']} vCPUs / {m['cores']} CPUs x "
              f"{m['sustainable_rps']:.2f} = {r['per_instance_rps']:.2f} req/s per instance",
              f"plan for stage {stage.name} at {r['rps']:g} req/s:",
              f"  target tracking: SageMakerVariantInvocationsPerInstance = {r['target_invocations_per_instance']} "
              f"per minute ({r['per_instance_rps']:.2f} req/s x 60 x headroom {r['headroom']:g})",
              f"  instances: min {r['min']} (ceil {r['rps']:g} / {r['per_instance_rps']:.2f}: within the objective "
              f"at the target load before any scale-out), max {r['max']} (ceil {r['rps']:g} x 60 / "
              f"{r['target_invocations_per_instance']}: where target tracking settles at the target load)",
              format_estimate(stage, cost)]
    return "\n".join(lines)


def write_stage(path: Path, name: str, values: dict) -> None:
    """Set ``values`` in stage ``name``'s one-line ``autoscaling: {...}`` of ``path``, every other line (comments
    included) as it was; the file read back must differ in those values only."""
    text = Path(path).read_text()
    before = yaml.safe_load(text)
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"  {re.escape(name)}:\s*(#.*)?$", line)), None)
    if start is None or name not in (before.get("stages") or {}):
        raise ValueError(f"no stage {name!r} in {path}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i].startswith("    ")),
               len(lines))
    at = [(i, m) for i in range(start + 1, end)
          if (m := re.match(r"(\s+autoscaling:\s*)(\{.*\})(\s*#.*)?(\s*)$", lines[i], re.S))]
    if not at:
        raise ValueError(f"{path}: stage {name} has no one-line `autoscaling: {{...}}` to update")
    i, found = at[0]
    mapping = {**yaml.safe_load(found[2]), **values}
    flow = yaml.safe_dump(mapping, default_flow_style=True, sort_keys=False, width=1000).strip()
    lines[i] = f"{found[1]}{flow}{found[3] or ''}{found[4]}"
    after_text = "".join(lines)
    after = yaml.safe_load(after_text)
    before["stages"][name]["autoscaling"].update(values)
    if after != before:
        raise ValueError(f"{path}: updating the autoscaling line would change more than it (not written)")
    Path(path).write_text(after_text)


def plot(measured: dict, path: Path, title: str) -> None:
    """p50 and p99 against offered load, the objective and the sustainable rate, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in measured["steps"] if math.isfinite(s.p99_ms)]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    offered = [s.offered_rps for s in steps]
    ax.plot(offered, [s.p99_ms for s in steps], "o-", label="p99")
    ax.plot(offered, [s.p50_ms for s in steps], "s--", label="p50")
    ax.axhline(measured["p99_ms"], color="red", linestyle=":", label=f"objective: p99 {measured['p99_ms']:g} ms")
    if measured["sustainable_rps"]:
        ax.axvline(measured["sustainable_rps"], color="gray", linestyle="--",
                   label=f"sustainable: {measured['sustainable_rps']:.2f} req/s")
    ax.set(xlabel="offered load (requests/s, open loop)", ylabel="latency (ms)", yscale="log", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU model unknown"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    return parse


def _fraction(text: str) -> float:
    value = _positive(float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text}")
    return value


def _stack_ml() -> Path:
    from services.stack.settings import state_dir

    return state_dir() / "ml"


def run(args) -> dict:
    from .promote.prices import estimate, load_prices

    config = yaml.safe_load(args.config.read_text())
    stage = load_stage(args.stage, args.config)
    p99_ms = args.p99_ms or float(config["stages"][args.stage]["autoscaling"].get("p99_ms", DEFAULT_P99_MS))
    table = load_prices()
    vcpus = table["sagemaker_instance_vcpus"].get(stage.instance_type)
    if vcpus is None:
        raise ValueError(f"no vCPU count for {stage.instance_type} in the price table (sagemaker_instance_vcpus)")
    model = args.model or _stack_ml() / "model"
    bodies = read_images(args.images or _stack_ml() / "data" / "test")
    measured = measure(model, bodies, p99_ms, args.step_s, args.max_steps)
    print(report_measurement(measured))
    plot_path = args.plot or Path(".dogops") / f"capacity-{args.stage}.png"
    plot(measured, plot_path, f"{model.parent.name}/{model.name}: one instance's latency, {measured['cores']} CPUs "
         f"here, p99 objective {p99_ms:g} ms")
    print(f"plot: {plot_path}")
    if measured["sustainable_rps"] is None:
        first = measured["steps"][0]
        raise ValueError(f"no load meets p99 <= {p99_ms:g} ms: at {first.offered_rps:.2f} req/s (the lightest step) "
                         f"p99 was {first.p99_ms:.0f} ms with {first.errors} errors of {first.sent}; raise --p99-ms")
    result = plan(measured, args.rps, vcpus, args.headroom)
    planned = replace(stage, min_capacity=result["min"], max_capacity=result["max"],
                      target_invocations=result["target_invocations_per_instance"])
    model_bytes = model.stat().st_size if model.is_file() else sum(
        p.stat().st_size for p in model.rglob("*") if p.is_file())
    cost = estimate(planned, model_bytes, table)
    print(report(measured, result, planned, cost))
    values = {"min": result["min"], "max": result["max"],
              "target_invocations_per_instance": result["target_invocations_per_instance"],
              "p99_ms": int(p99_ms) if p99_ms.is_integer() else p99_ms}
    if args.write:
        check(args.config, stage_limits(planned))
        write_stage(args.config, args.stage, values)
        print(f"wrote stages.{args.stage}.autoscaling = {values} to {args.config}")
    steps = [{k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in asdict(s).items()}
             for s in measured["steps"]]  # a step with under two answers has no latency: null, not Infinity
    return {"measured": {**measured, "steps": steps}, "plan": result,
            "cost_per_hour": cost["per_hour"], "plot": str(plot_path)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, help="a stage of the config (dev, prod): its instance type, "
                        "region and p99 objective")
    parser.add_argument("--rps", type=_positive(float), required=True, help="the target load, requests per second")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--model", type=Path, help="a model folder or model.tar.gz (default: the local stack's "
                        "trained model)")
    parser.add_argument("--images", type=Path, help="a folder of request images (default: the local stack's test "
                        "split)")
    parser.add_argument("--p99-ms", type=_positive(float), help="the latency objective (default: the stage's "
                        f"autoscaling.p99_ms, else {DEFAULT_P99_MS:g})")
    parser.add_argument("--headroom", type=_fraction, default=DEFAULT_HEADROOM, help="the share of one instance's "
                        "sustainable throughput the target tracks (default: %(default)s, AWS's safety factor)")
    parser.add_argument("--step-s", type=_positive(float), default=10.0, help="seconds per load step "
                        "(default: %(default)s)")
    parser.add_argument("--max-steps", type=_positive(int), default=len(FRACTIONS),
                        help="open-loop steps at most (default: %(default)s)")
    parser.add_argument("--plot", type=Path, help="the PNG (default: .dogops/capacity-STAGE.png)")
    parser.add_argument("--write", action="store_true", help="write min, max, the target and p99_ms into the "
                        "stage's autoscaling in the config")
    json_flag(parser)
    parser.set_defaults(func=run)

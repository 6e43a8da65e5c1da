"""A user's own SageMaker training script, as the SDK's PyTorch estimator runs one (entry_point="train.py"):
its own arguments, the toolkit's SM_* environment, a dependency from requirements.txt, metric lines."""

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

import tinydep  # requirements.txt: a wheel shipped in the source directory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--fail", default="")
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    args = parser.parse_args()
    if args.fail:
        print("about to fail", flush=True)
        raise ValueError(args.fail)
    values = [float(p.read_text()) for p in sorted(Path(os.environ["SM_CHANNEL_TRAINING"]).glob("*.txt"))]
    weight = 0.0
    for epoch in range(1, args.epochs + 1):
        weight += args.learning_rate * (sum(values) - weight)
        print(f"epoch={epoch} train_loss={abs(sum(values) - weight):.4f};", flush=True)
    host = os.environ["SM_CURRENT_HOST"]
    seen = {"env": {k: v for k, v in os.environ.items() if k.startswith(("SM_", "MASTER_"))}, "argv": sys.argv[1:],
            "tinydep": tinydep.__file__, "answer": tinydep.answer(), "torch": version("torch"),
            "python": sys.executable, "cwd": os.getcwd()}
    Path(args.model_dir, f"seen-{host}.json").write_text(json.dumps(seen, indent=1))
    if host == json.loads(os.environ["SM_HOSTS"])[0]:
        Path(args.model_dir, "model.txt").write_text(f"{weight:.6f}\n")
        Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt").write_text(f"{len(values)} values\n")
    print(f"final weight={weight:.6f}", flush=True)


if __name__ == "__main__":
    main()

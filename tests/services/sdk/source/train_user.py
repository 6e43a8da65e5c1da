"""A user's own training script, as a SageMaker notebook ships it (sagemaker_program): reads its hyperparameters
as --name value arguments and logs its loss, a known function of the learning rate."""

import argparse
import math

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, required=True)
parser.add_argument("--epochs", type=int, default=1)
args, _ = parser.parse_known_args()
for epoch in range(1, args.epochs + 1):
    print(f"epoch={epoch} test_loss={(math.log10(args.learning_rate) + 2.5) ** 2 + 1 / epoch:.6f}", flush=True)

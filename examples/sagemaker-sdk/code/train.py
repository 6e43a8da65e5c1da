"""The user's training script, as SageMaker script mode runs it: the `training` and `validation` channels hold one
folder of JPEGs per class; hyperparameters come as --name value; the weights go to SM_MODEL_DIR."""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from PIL import Image
from shapes_model import TinyNet, to_tensor
from torch import nn


def load(folder: Path, classes: list[str] | None = None):
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.jpg")):
            images.append(to_tensor(Image.open(path)))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels), classes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", "model")))
    parser.add_argument("--train", type=Path, default=Path(os.environ.get("SM_CHANNEL_TRAINING", "data/train")))
    parser.add_argument("--validation", type=Path,
                        default=Path(os.environ.get("SM_CHANNEL_VALIDATION", "data/validation")))
    args = parser.parse_args()
    hosts = json.loads(os.environ.get("SM_HOSTS", '["local"]'))
    host = os.environ.get("SM_CURRENT_HOST", "local")
    print(f"[shapes] host {host} of {len(hosts)}; lr={args.lr} epochs={args.epochs}", flush=True)

    torch.manual_seed(args.seed)
    x, y, classes = load(args.train)
    vx, vy, _ = load(args.validation, classes)
    model = TinyNet(len(classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), args.batch_size):
            batch = order[start:start + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(vx)
            val_loss = loss_fn(logits, vy).item()
            accuracy = (logits.argmax(1) == vy).float().mean().item()
        print(f"[shapes] epoch {epoch}: train_loss={loss.item():.4f} val_loss={val_loss:.4f} "
              f"val_accuracy={accuracy:.4f}", flush=True)
    print(f"[shapes] trained in {time.monotonic() - started:.1f} s", flush=True)
    if host == hosts[0]:  # every host trained the same model; the first one keeps it
        args.model_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "classes": classes}, args.model_dir / "model.pth")


if __name__ == "__main__":
    main()

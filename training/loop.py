"""Training the head on backbone features: real epochs, early stopping, checkpoints.

What the original got wrong and this does right: every epoch runs (no stray
``break``), the logged loss is the mean per image (not multiplied by the batch
size), early stopping watches the validation loss and keeps the best weights,
and test accuracy is measured once at the end on the best weights.

Every decision that depends on randomness comes from the seed and the epoch
(head init, the order of each epoch), and a checkpoint after every epoch, or
at the next batch after SIGTERM, records everything else, so an interrupted
and resumed run ends with exactly the metrics of an uninterrupted one. A
checkpoint holds only tensors, numbers, strings, lists and dicts (no RNG
state objects): it loads with ``weights_only=True``, so one fetched from S3
cannot run code.

With several hosts, the head is wrapped in DistributedDataParallel: each
global batch is split across ranks and each rank's loss is scaled so the
averaged gradient equals the single-host full-batch gradient.
"""

import copy
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from . import atomic
from .features import Interrupted
from .hyperparameters import Hyperparameters
from .metrics import format_metrics
from .model import build_head

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopState:
    """Everything a resumed run needs beyond the seed."""

    head: dict
    optimizer: dict
    epoch: int = 0  # next epoch to run
    batch: int = 0  # next batch within that epoch
    loss_sum: float = 0.0  # this epoch's summed training loss so far (this rank)
    seen: int = 0  # images behind loss_sum
    best_valid_loss: float = float("inf")
    best_head: dict | None = None
    bad_epochs: int = 0
    finished: bool = False
    history: list = dataclasses.field(default_factory=list)


def _save(state: LoopState, meta: dict, path: Path) -> None:
    with atomic.replacing(path) as out:
        torch.save({"meta": meta, "state": dataclasses.asdict(state)}, out)


def _load(path: Path | None, meta: dict) -> LoopState | None:
    if path is None or not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("meta") != meta:
        log.warning("checkpoint %s belongs to another configuration or data set; starting afresh", path)
        return None
    state = LoopState(**saved["state"])
    log.info("resuming from checkpoint %s at epoch %d, batch %d", path, state.epoch + 1, state.batch)
    return state


@torch.no_grad()
def evaluate(head: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean negative log-likelihood and accuracy of ``head`` on a feature set."""
    log_probs = torch.log_softmax(head(features), dim=1)
    loss = nn.functional.nll_loss(log_probs, labels).item()
    accuracy = (log_probs.argmax(dim=1) == labels).float().mean().item()
    return loss, accuracy


def _any_rank(flag: bool, distributed: bool) -> bool:
    if not distributed:
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _sum_ranks(*values: float, distributed: bool) -> list[float]:
    if not distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def train_head(features: Callable[[], dict], num_classes: int, feature_dim: int, hp: Hyperparameters,
               checkpoint: Path | None, meta: dict, rank: int = 0, world_size: int = 1,
               should_stop: Callable[[], bool] = lambda: False) -> tuple[nn.Module, dict]:
    """Train the head and return it (best validation weights) with its final metrics.

    ``features`` is called once per epoch and returns ``{split: {"features", "labels"}}``;
    with the feature cache it returns the same tensors each time.
    Raises :class:`Interrupted` after saving a checkpoint when ``should_stop`` turns true.
    """
    distributed = world_size > 1
    torch.manual_seed(hp.seed + 1)
    head = build_head(feature_dim, hp.hidden_units, num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=hp.learning_rate)
    state = _load(checkpoint, meta)
    if state is None:
        state = LoopState(head=head.state_dict(), optimizer=optimizer.state_dict())
    head.load_state_dict(state.head)
    optimizer.load_state_dict(state.optimizer)
    trained = nn.parallel.DistributedDataParallel(head) if distributed else head

    def save():
        if checkpoint is not None:
            state.head, state.optimizer = head.state_dict(), optimizer.state_dict()
            _save(state, meta, checkpoint)

    while not state.finished and state.epoch < hp.epochs:
        try:
            data = features()
        except Interrupted:
            save()
            raise Interrupted(f"stopped before epoch {state.epoch + 1}; checkpoint saved") from None
        x, y = data["train"]["features"], data["train"]["labels"]
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(hp.seed * 100_003 + state.epoch))
        batches = order.split(hp.batch_size)
        head.train()
        for b in range(state.batch, len(batches)):
            if _any_rank(should_stop(), distributed):
                state.batch = b
                save()
                raise Interrupted(f"stopped at epoch {state.epoch + 1}, batch {b}; checkpoint saved")
            mine = batches[b][rank::world_size]
            summed = nn.functional.nll_loss(torch.log_softmax(trained(x[mine]), dim=1), y[mine], reduction="sum")
            optimizer.zero_grad()
            (summed * world_size / len(batches[b])).backward()
            optimizer.step()
            state.loss_sum += summed.item()
            state.seen += len(mine)
        loss_sum, seen = _sum_ranks(state.loss_sum, state.seen, distributed=distributed)
        head.eval()
        valid_loss, valid_accuracy = evaluate(head, data["valid"]["features"], data["valid"]["labels"])
        epoch = {"epoch": state.epoch + 1, "train_loss": loss_sum / seen,
                 "valid_loss": valid_loss, "valid_accuracy": valid_accuracy}
        state.history.append(epoch)
        if rank == 0:
            log.info(format_metrics(f"epoch={state.epoch + 1}", **{k: v for k, v in epoch.items() if k != "epoch"}))
        if valid_loss < state.best_valid_loss:
            state.best_valid_loss, state.best_head, state.bad_epochs = valid_loss, copy.deepcopy(head.state_dict()), 0
        else:
            state.bad_epochs += 1
        state.epoch, state.batch, state.loss_sum, state.seen = state.epoch + 1, 0, 0.0, 0
        if hp.patience and state.bad_epochs >= hp.patience:
            log.info("early stopping: validation loss has not improved for %d epochs", state.bad_epochs)
            state.finished = True
        save()

    head.load_state_dict(state.best_head)
    head.eval()
    data = features()
    test_loss, test_accuracy = evaluate(head, data["test"]["features"], data["test"]["labels"])
    best = min(state.history, key=lambda e: e["valid_loss"])
    result = {"epochs_run": len(state.history), "best_epoch": best["epoch"], "valid_loss": best["valid_loss"],
              "valid_accuracy": best["valid_accuracy"], "test_loss": test_loss, "test_accuracy": test_accuracy,
              "history": state.history}
    if rank == 0:
        log.info(format_metrics("final", test_loss=test_loss, test_accuracy=test_accuracy))
    return head, result

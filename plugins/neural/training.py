"""One training loop for every neural backend: validation split, early stopping, epoch and time
budgets, SGD with annealing or Adam, gradient clipping, progress with loss, perplexity and
tokens/s, the best weights kept, checkpoints that survive Ctrl-C for ``--resume``, and
DistributedDataParallel when started under ``torchrun``.

A backend supplies a *task*: its network, how to cut an id stream into batches, and the summed
loss of a batch. Everything else lives here once.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from engine.errors import ForetellError
from engine.vocab import BOS_ID


class Task(Protocol):
    net: torch.nn.Module

    def batches(self, ids: np.ndarray, shuffle: bool, rng: np.random.Generator, shard: tuple[int, int]) -> Iterator: ...

    def reset(self, batch_size: int) -> None: ...

    def loss(self, net: torch.nn.Module, batch) -> tuple[torch.Tensor, int]: ...


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}  # by the options' name


def split_validation(ids: np.ndarray, every: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Every ``every``-th sentence held out for validation (deterministic)."""
    starts = np.flatnonzero(np.asarray(ids) == BOS_ID)
    ends = np.append(starts[1:], len(ids))
    if len(starts) < 2:
        raise ForetellError("neural training needs at least two sentences (one is held out for validation)")
    held = np.zeros(len(starts), dtype=bool)
    held[every - 1 :: every] = True
    if not held.any():
        held[-1] = True
    pick = lambda mask: np.concatenate([np.asarray(ids[s:e]) for s, e, m in zip(starts, ends, mask) if m])  # noqa: E731
    return pick(~held), pick(held)


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ForetellError("--device cuda asked for, but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, initialising the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def evaluate(task: Task, net: torch.nn.Module, ids: np.ndarray, batch_size: int, device) -> float:
    """Mean negative log-likelihood (nats) over the scored tokens of ``ids``."""
    net.eval()
    task.reset(batch_size)
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in task.batches(ids, False, np.random.default_rng(0), (0, 1)):
            loss, n = task.loss(net, batch)
            total += float(loss)
            count += n
    return total / max(count, 1)


def train(task: Task, train_ids: np.ndarray, valid_ids: np.ndarray, options, progress: Callable | None = None, workdir: Path | None = None):
    """Train ``task.net`` in place; returns (best state dict, metrics rows)."""
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    rank, world = distributed()
    torch.set_num_threads(options.threads or max(1, (os.cpu_count() or 1) // world))
    device = pick_device(options.device)
    net = task.net.to(device)
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    lr = options.lr
    optimizer = OPTIMIZERS[options.optimizer](net.parameters(), lr=lr)
    best_state, best_loss, epoch0, stale = None, math.inf, 0, 0
    metrics: list[dict] = []
    checkpoint = workdir / "checkpoint.pt" if workdir else None
    if options.resume:
        if not (checkpoint and checkpoint.exists()):
            raise ForetellError("nothing to resume: no checkpoint from an interrupted training of this model")
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        best_state, best_loss, epoch0, lr, stale = saved["best"], float(saved["best_loss"]), int(saved["epoch"]), float(saved["lr"]), int(saved["stale"])
        metrics = json.loads((workdir / "metrics.json").read_text()) if (workdir / "metrics.json").exists() else []
        for group in optimizer.param_groups:
            group["lr"] = lr
    averaged = RunningMean()
    started = time.monotonic()
    deadline = started + 60 * options.max_minutes if options.max_minutes else None
    interrupted = False
    epoch_tokens = max(1, int(np.sum(np.asarray(train_ids) != BOS_ID)) // world)
    limit = options.epoch_limit  # a time budget given alone is the budget used

    def share_done(epoch_progress: float) -> float:
        """How much of the budget is spent: whichever of the epochs and the minutes ends first."""
        by_epochs = epoch_progress / limit if limit else 0.0
        return max(by_epochs, (time.monotonic() - started) / (deadline - started)) if deadline else by_epochs

    try:
        for epoch in itertools.count(epoch0) if limit is None else range(epoch0, limit):
            model.train()
            task.reset(options.batch_size)
            seen, loss_sum, clipped, steps, t0 = 0, 0.0, 0, 0, time.monotonic()
            norms = []
            for batch in task.batches(train_ids, True, rng, (rank, world)):
                loss, n = task.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                (loss / max(n, 1)).backward()
                norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), options.clip))
                norms.append(norm)
                clipped += norm > options.clip
                if options.schedule == "linear":
                    done = share_done(epoch + (seen + n / 2) / epoch_tokens)
                    for group in optimizer.param_groups:
                        group["lr"] = lr * max(0.0, 1 - done)
                optimizer.step()
                if options.average and share_done(epoch + seen / epoch_tokens) >= 1 - options.average:
                    averaged.add(net)
                seen += n
                loss_sum += float(loss.detach())
                steps += 1
                if progress and steps % 20 == 0:
                    rate = seen / max(time.monotonic() - t0, 1e-9)
                    mean = loss_sum / max(seen, 1)
                    progress(f"epoch {epoch + 1} loss {mean:.3f} ppl {math.exp(min(mean, 50)):.1f} {rate:,.0f} tok/s", min(1.0, share_done(epoch + seen / epoch_tokens)))
                if deadline and time.monotonic() > deadline:
                    break
            with averaged.in_place(net):  # (the weights as they are when nothing is averaged yet)
                valid = evaluate(task, net, valid_ids, options.batch_size, device)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "valid_loss": valid,
                "valid_perplexity": math.exp(min(valid, 50)),
                "lr": optimizer.param_groups[0]["lr"],  # the rate of the epoch's last step
                "train_perplexity": math.exp(min(loss_sum / max(seen, 1), 50)),
                "grad_norm_mean": float(np.mean(norms)) if norms else 0.0,  # before clipping
                **{f"grad_norm_p{q}": float(np.percentile(norms, q)) if norms else 0.0 for q in (10, 50, 90)},
                "grad_norm_max": float(np.max(norms)) if norms else 0.0,
                "clipped_share": clipped / max(steps, 1),
                "tokens_per_s": seen / max(time.monotonic() - t0, 1e-9),
                "minutes": (time.monotonic() - started) / 60,
            }
            metrics.append(row)
            if progress:
                progress(f"epoch {epoch + 1}: valid ppl {row['valid_perplexity']:.1f}", min(1.0, share_done(epoch + 1)))
            # Perplexity gained this epoch, in percent (Mikolov's RNNLM anneals on a small gain,
            # not only on a loss: a tanh RNN can idle at a plateau for epochs at a high rate).
            gain = 100 * (1 - math.exp(valid - best_loss)) if math.isfinite(best_loss) else math.inf
            if valid < best_loss:
                with averaged.in_place(net):
                    best_loss, best_state, stale = valid, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
            # Once averaging, the rate stays (the mean gains slowly by nature, and iterates that
            # stop moving add nothing to it: annealed, a 20-minute Elman's mean stalled at valid 145).
            if gain < options.anneal_below and not averaged.steps:
                lr /= options.anneal_by
                for group in optimizer.param_groups:
                    group["lr"] = lr
            if rank == 0 and checkpoint:
                _write_checkpoint(checkpoint, net, optimizer, best_state, best_loss, epoch + 1, lr, stale, metrics)
            if stale > options.patience or (deadline and time.monotonic() > deadline):
                break
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        raise ForetellError(
            "training interrupted; the saved model is unchanged" + (" (rerun with -O resume=true to continue)" if checkpoint and checkpoint.exists() else "")
        )
    if checkpoint and checkpoint.exists():
        checkpoint.unlink()
    return (best_state or net.state_dict()), metrics


class RunningMean:
    """The mean of a network's weights over the steps ``add`` saw (Polyak and Juditsky 1992, as
    AWD-LSTM's averaged SGD): at a learning rate high enough to keep moving, SGD's iterates
    circle a minimum their mean lies closer to."""

    def __init__(self):
        self.mean: list[torch.Tensor] | None = None
        self.steps = 0

    def add(self, net: torch.nn.Module) -> None:
        weights = [p.detach() for p in net.parameters()]
        self.steps += 1
        if self.mean is None:
            self.mean = [w.clone() for w in weights]
        else:
            for m, w in zip(self.mean, weights):
                m.lerp_(w, 1 / self.steps)

    @contextlib.contextmanager
    def in_place(self, net: torch.nn.Module):
        """The mean in the network's weights for the block (the weights as they are with no mean yet)."""
        if self.mean is None:
            yield
            return
        own = [p.detach().clone() for p in net.parameters()]
        with torch.no_grad():
            for p, m in zip(net.parameters(), self.mean):
                p.copy_(m)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(net.parameters(), own):
                    p.copy_(w)


def _write_checkpoint(path: Path, net, optimizer, best, best_loss, epoch, lr, stale, metrics) -> None:
    for folder in (path.parent.parent, path.parent):  # the store's work/ and work/NAME, private
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "best": best, "best_loss": best_loss, "epoch": epoch, "lr": lr, "stale": stale}, tmp)
    os.replace(tmp, path)
    (path.parent / "metrics.json").write_text(json.dumps(metrics))

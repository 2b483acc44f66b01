"""One readable training loop. It knows no task and no architecture.

The model gives ``losses(batch) -> {name: scalar}``; a joint-loss module turns them into one
scalar and reports each weight. Early stopping and the best checkpoint follow a VALIDATION metric
(never test). Every epoch ends with an atomic checkpoint (one file, ``checkpoint.py``), so Ctrl-C
or a kill leaves the last good one, and ``resume=True`` continues to the same result as an
uninterrupted run: a run that had stopped early stays stopped, and the training time it had
spent is carried on (``LoopState.seconds``).

Data-parallel (issue 7): given a ``Distributed`` with several ranks, the losses are computed
through DDP (``LossModule``), the joint-loss parameters' gradients are averaged by hand, epoch
losses are averaged over ranks, rank 0 validates and broadcasts the metrics (so every rank takes
the same early-stopping decision), and only rank 0 writes checkpoints or calls the callbacks.
Every rank resumes from the same checkpoint, each with its own saved RNG state.

Sparse embeddings (issue 7, ``training/sparse.py``): large embedding tables get sparse gradients
and their own ``SparseAdam``, chosen by module type and size; everything else keeps AdamW. Both
optimizers and their schedules are checkpointed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from hydrarec.config import TrainConfig
from hydrarec.errors import RunError
from hydrarec.features.batch import Batch
from hydrarec.io.progress import Progress
from hydrarec.training import checkpoint
from hydrarec.training.distributed import Distributed, DistributedError, LossModule
from hydrarec.training.optim import clip_groups, optimizers
from hydrarec.training.prefetch import prefetch
from hydrarec.training.schedule import warmup_cosine
from hydrarec.training.sparse import clip_grad_norm, sparse_parameters


class Objective(Protocol):
    """Combines per-task losses and does its loss weighting's work (``JointLoss``)."""

    @property
    def differentiates_losses(self) -> bool: ...  # before_backward differentiates the losses

    def __call__(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...
    def before_backward(self, losses: dict[str, Tensor]) -> None: ...
    def epoch_end(self, mean_losses: dict[str, float]) -> None: ...
    def parameters(self) -> Iterable[nn.Parameter]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best: float | None = None  # best validation value of the monitored metric
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # wall-clock seconds of the epochs done, over every resume


@dataclass
class TrainResult:
    best: float | None
    best_epoch: int
    epochs: int
    history: list[dict[str, Any]]
    stopped_early: bool
    seconds: float  # of training and validation, summed over the interrupted parts of a run


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        cfg: TrainConfig,
        *,
        device: torch.device,
        checkpoint_dir: Path | None = None,
        on_best: Callable[[nn.Module, int], None] | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        progress: Progress | None = None,
        dist: Distributed | None = None,
    ) -> None:
        self.model = model.to(device)
        self.dist = dist or Distributed()
        # large embedding tables: sparse gradients + SparseAdam (set before DDP wraps the model)
        self.sparse_params = sparse_parameters(self.model, cfg.sparse_embeddings)
        self.clip_groups = clip_groups(self.model)  # gradient norms clipped separately
        # an objective that differentiates each task loss before the backward (GradNorm) does
        # what DDP's gradient hooks mistake for part of the step (measured: the ranks' models
        # drift apart); its gradients are averaged by hand instead, without DDP's overlap
        self.sync_by_hand = self.dist.enabled and objective.differentiates_losses
        # DDP syncs gradients through ``forward``: the losses are that forward (see LossModule)
        self.compute_losses = (
            LossModule(self.model)
            if self.sync_by_hand
            else self.dist.wrap(LossModule(self.model), device, own=self.sparse_params)
        )
        if self.sync_by_hand:
            self.dist.broadcast_parameters(self.model)  # what DDP does when it wraps a model
        self.objective = objective
        if isinstance(objective, nn.Module):
            objective.to(device)
        self.cfg = cfg
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.on_best = on_best if self.dist.is_main else None
        self.on_epoch_end = on_epoch_end if self.dist.is_main else None
        quiet = Progress(enabled=False)
        self.progress = progress if progress is not None and self.dist.is_main else quiet
        self.optimizer, self.sparse_optimizer = optimizers(
            model, list(objective.parameters()), self.sparse_params, cfg
        )
        self.state = LoopState()

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer] + ([self.sparse_optimizer] if self.sparse_optimizer else [])

    def _autocast(self) -> Any:
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def fit(
        self,
        batches: Callable[[int], Iterable[Batch]],
        steps_per_epoch: int,
        validate: Callable[[nn.Module], dict[str, float]] | None,
        monitor: str,
        mode: str,
        *,
        resume: bool = False,
        epochs: int | None = None,
    ) -> TrainResult:
        """Train up to ``cfg.epochs`` epochs; ``batches(epoch)`` yields that epoch's batches.

        ``validate=None`` (a refit, ``train.refit``): no validation and no early stop; training
        stops after ``epochs`` epochs of the same ``cfg.epochs`` schedule (so the learning rate
        of each epoch is the one it had in the run that selected them), and the final weights
        are the result (``on_best`` gets them)."""
        if (validate is None) != (epochs is not None):
            raise ValueError("pass validate, or (refit) epochs without validate, not both")
        if epochs is not None and not 1 <= epochs <= self.cfg.epochs:
            raise ValueError(f"epochs must be in 1..{self.cfg.epochs} (train.epochs), got {epochs}")
        stop = self.cfg.epochs if epochs is None else epochs
        label = "epoch" if epochs is None else "refit epoch"  # the progress bar's
        total = self.cfg.epochs * max(1, steps_per_epoch)
        self.schedulers = [warmup_cosine(o, total, self.cfg.warmup) for o in self._optimizers()]
        self.scheduler = self.schedulers[0]
        if resume and self._resumable():
            self._load_checkpoint()
        else:
            torch.manual_seed(self.cfg.seed)
        # a checkpoint written when patience ran out: the run had stopped (issue 21)
        stopped = validate is not None and self.state.bad_epochs >= self.cfg.patience
        mark = time.perf_counter()
        while self.state.epoch < stop and not stopped:
            epoch = self.state.epoch + 1
            # closing: an error in a step stops the assembling thread at once
            with closing(prefetch(batches(epoch), self.cfg.prefetch)) as epoch_batches:
                record = self._train_epoch(
                    epoch, epoch_batches, steps_per_epoch, f"{label} {epoch}/{stop}"
                )
            if validate is None:
                if epoch == stop:
                    self._keep_final(epoch)
            elif epoch % self.cfg.eval_every == 0 or epoch == self.cfg.epochs:
                stopped = self._validate(record, validate, monitor, mode)
            self.state.epoch = epoch
            self.state.history.append(record)
            now = time.perf_counter()  # the last checkpoint's writing counts in this epoch
            self.state.seconds, mark = self.state.seconds + now - mark, now
            self._save_checkpoint()
            if self.on_epoch_end is not None:
                self.on_epoch_end(record)
            self.dist.barrier()  # the epoch's checkpoint is on disk before any rank moves on
        s = self.state
        return TrainResult(s.best, s.best_epoch, s.epoch, s.history, stopped, s.seconds)

    def _train_epoch(
        self, epoch: int, batches: Iterable[Batch], steps: int, title: str
    ) -> dict[str, Any]:
        self.compute_losses.train()
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        n = 0
        start = time.perf_counter()
        with self.progress.task(title, total=steps) as bar:
            for batch in batches:
                losses, weights = self._step(batch.to(self.device))
                n += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.advance({k: v / n for k, v in sums.items()})
        mean = self.dist.mean(sums, n)  # over every rank's batches (DWA needs the same on all)
        self.objective.epoch_end({k: v for k, v in mean.items() if k != "total"})
        return {
            "epoch": epoch,
            "seconds": round(time.perf_counter() - start, 3),
            "lr": self.scheduler.get_last_lr()[0],
            "train_loss": mean,
            "weights": weights,
        }

    def _step(self, batch: Batch) -> tuple[dict[str, float], dict[str, float]]:
        with self._autocast():
            losses = self.compute_losses(batch)
            total, weights = self.objective(losses)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss is {total.item()} at step {self.state.step}: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                + " (lower train.lr, or check the labels)"
            )
        for o in self._optimizers():
            o.zero_grad(set_to_none=True)
        self.objective.before_backward(losses)  # the loss weighting's per-step work (GradNorm's)
        total.backward()  # under DDP this also averages the model's gradients over ranks
        if self.sync_by_hand:
            self.dist.average_gradients(self.model.parameters())
        self.dist.average_gradients(self.objective.parameters())
        self.dist.average_sparse_gradients(self.sparse_params)  # DDP leaves them out
        for params in self.clip_groups if self.cfg.grad_clip > 0 else []:
            if self.sparse_params:  # torch's clipping cannot take sparse gradients
                clip_grad_norm(params, self.cfg.grad_clip)
            else:
                nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        for o in self._optimizers():
            o.step()
        for s in self.schedulers:
            s.step()
        self.state.step += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["total"] = float(total.detach())
        return out, weights

    def _validate(
        self,
        record: dict[str, Any],
        validate: Callable[[nn.Module], dict[str, float]],
        monitor: str,
        mode: str,
    ) -> bool:
        """Record validation metrics; keep the best model; True when patience ran out."""
        self.model.eval()
        start = time.perf_counter()
        metrics = self.dist.from_main(lambda: validate(self.model))  # rank 0 validates
        record["valid"] = metrics
        record["valid_seconds"] = round(time.perf_counter() - start, 3)
        if monitor not in metrics:
            raise KeyError(f"monitored metric {monitor!r} not among {sorted(metrics)}")
        value = metrics[monitor]
        better = self.state.best is None or (
            value > self.state.best if mode == "max" else value < self.state.best
        )
        if better and not math.isnan(value):
            s = self.state
            s.best, s.best_epoch, s.bad_epochs = value, record["epoch"], 0
            if self.on_best is not None:
                self.on_best(self.model, record["epoch"])
        else:
            self.state.bad_epochs += 1
        return self.state.bad_epochs >= self.cfg.patience

    def _keep_final(self, epoch: int) -> None:
        """A refit's result: the last epoch's weights (no validation chose them)."""
        self.state.best_epoch = epoch
        if self.on_best is not None:
            self.on_best(self.model, epoch)

    # -- checkpoints ---------------------------------------------------------------------------
    def _stem(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / "last"

    def _can_resume(self) -> bool:
        stem = self._stem()
        return stem is not None and checkpoint.exists(stem)

    def _resumable(self) -> bool:
        """Whether to resume; every rank must see the checkpoint (a shared run directory)."""
        seen = self.dist.gather(self._can_resume())
        if any(seen) and not all(seen):
            missing = [r for r, ok in enumerate(seen) if not ok]
            raise DistributedError(
                f"ranks {missing} cannot see the checkpoint under {self.checkpoint_dir} that "
                "rank 0 resumes from: the run directory must be on a filesystem every node sees"
            )
        return all(seen)

    def _save_checkpoint(self) -> None:
        stem = self._stem()
        if stem is None:
            return
        rng = self.dist.gather(torch.get_rng_state())  # each rank's, so resume is exact
        if not self.dist.is_main:
            return
        checkpoint.save_state(
            stem,
            {
                "model": self.model.state_dict(),
                "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "sparse_optimizer": self.sparse_optimizer and self.sparse_optimizer.state_dict(),
                "scheduler": {"last_epoch": self.scheduler.last_epoch},
                "rng_ranks": rng,  # torch RNG state of each rank, in rank order
                "loop": asdict(self.state),
            },
        )

    def _load_checkpoint(self) -> None:
        stem = self._stem()
        assert stem is not None
        st = checkpoint.load_state(stem)  # RunError if damaged, edited or of another format
        try:
            self._restore(st)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            # e.g. resumed with another model config: state dicts of other shapes
            raise RunError(
                f"{checkpoint.file_of(stem)}: does not fit this run's model and training "
                f"config ({type(e).__name__}: {e}); resume with the config it was trained with"
            ) from None

    def _restore(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.objective.load_state_dict(st["objective"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.sparse_optimizer is not None:
            if not st.get("sparse_optimizer"):
                raise ValueError(
                    "the checkpoint has no sparse-embedding optimizer; resume with the "
                    "train.sparse_embeddings setting it was trained with"
                )
            self.sparse_optimizer.load_state_dict(st["sparse_optimizer"])
        # the optimizer's param groups carry the current lr; the schedulers only need the count
        for s in self.schedulers:
            s.last_epoch = int(st["scheduler"]["last_epoch"])
        ranks = st["rng_ranks"]
        same_world = len(ranks) == self.dist.world_size  # else every rank continues rank 0's
        torch.set_rng_state(ranks[self.dist.rank] if same_world else ranks[0])
        loop = st["loop"]
        self.state = LoopState(*(loop[f.name] for f in fields(LoopState)))
        self.state.history, self.state.seconds = list(loop["history"]), float(loop["seconds"])

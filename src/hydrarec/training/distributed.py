"""Data-parallel training on PyTorch's own runtime: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc-per-node N -m hydrarec train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
``process_group`` reads them, joins the group (gloo on CPU, NCCL on CUDA) with a bounded timeout,
and hands back a ``Distributed``: the few collective operations the trainer needs, which are
no-ops in a single process. So the trainer has one code path and knows nothing of ranks beyond
"am I the main process" (only rank 0 logs and writes files).

A rank that dies makes the others fail instead of hang: torchrun stops the remaining workers and
exits non-zero, and a collective that waits longer than ``HYDRAREC_DIST_TIMEOUT`` seconds
(default 1800) raises. Both end as a ``DistributedError`` naming the rank. See docs/distributed.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from hydrarec.errors import HydrarecError

T = TypeVar("T")
TIMEOUT_ENV = "HYDRAREC_DIST_TIMEOUT"  # seconds a collective may wait for the slowest rank
DEFAULT_TIMEOUT_S = 1800.0  # torch's own default; validation on rank 0 must fit inside it


class DistributedError(HydrarecError, RuntimeError):
    """A collective operation failed: another rank died, hung past the timeout, or the network
    between ranks broke."""


def env_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the variables torchrun sets; (0, 1, 0) without."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one): the one that logs and writes files."""
    return env_rank()[0] == 0


def timeout_s() -> float:
    """The collective timeout in seconds (``HYDRAREC_DIST_TIMEOUT``, default 1800)."""
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise DistributedError(f"{TIMEOUT_ENV} must be > 0 seconds, got {raw!r}")
    return value


class LossModule(nn.Module):
    """``forward(batch) = model.losses(batch)``: the module DDP wraps.

    DDP synchronises gradients only for work done inside its ``forward``, and the trainer needs
    the per-task losses rather than the model's outputs, so this thin wrapper makes computing the
    losses the forward pass. It adds no parameters and no state-dict prefix to the model's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return self.model.losses(batch)  # type: ignore[operator,no-any-return]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job, and the collectives the trainer uses.

    With ``world_size == 1`` (no torchrun) every method is a local no-op, so single-process
    training runs exactly the code it ran before DDP existed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def backend(self) -> str:
        """The process group's backend ("gloo", "nccl"); "none" in a single process."""
        return str(dist.get_backend()) if self.enabled else "none"

    def supports_sparse_gradients(self) -> bool:
        """Whether sparse gradients can be all-reduced: gloo can, NCCL cannot."""
        return not self.enabled or self.backend() == "gloo"

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in DDP when distributed (gradients averaged over ranks in backward).

        ``static_graph``: the same parameters take part in every step (a task without labels in
        a batch still contributes a zero loss), so DDP learns the set once, also when a part is
        never used (e.g. an architecture's layer no task reads), instead of walking the autograd
        graph each step as ``find_unused_parameters`` does.
        """
        if not self.enabled:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, static_graph=True)

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (for a model not wrapped in DDP)."""
        if self.enabled:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Average ``.grad`` over ranks by hand (parameters DDP does not own: loss weights)."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.world_size)

    def mean(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """``sum(sums) / sum(count)`` over ranks, per key (every rank holds the same keys)."""
        if not self.enabled:
            return {k: v / max(count, 1) for k, v in sums.items()}
        keys = sorted(sums)  # the same order on every rank
        t = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        total = max(float(t[-1]), 1.0)
        mean = {k: float(t[i]) / total for i, k in enumerate(keys)}
        return {k: mean[k] for k in sums}

    def from_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give every rank its result (e.g. validation metrics,
        so that all ranks take the same early-stopping decision and stop together)."""
        if not self.enabled:
            return fn()
        box: list[Any] = [fn() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[no-any-return]

    def gather(self, obj: T) -> list[T]:
        """``obj`` of every rank, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


# what gloo / NCCL / the c10d store say when a peer is gone or a collective timed out
_COLLECTIVE_FAILURE = ("gloo", "nccl", "timed out", "connection closed", "connection reset")


def is_collective_failure(e: BaseException) -> bool:
    """Whether ``e`` comes from the communication layer. Gloo raises a plain ``RuntimeError``
    (not ``DistError``) on a timeout or a closed peer, so its message is checked too.

    >>> is_collective_failure(RuntimeError("[gloo/pair.cc:534] Connection closed by peer"))
    True
    >>> is_collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    False
    """
    if isinstance(e, dist.DistError):
        return True
    if isinstance(e, HydrarecError):
        return False
    text = str(e).lower()
    return any(word in text for word in _COLLECTIVE_FAILURE)


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """Each rank of a node gets its own GPU (``cuda:LOCAL_RANK``); CPU ranks share the CPU."""
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[Distributed, torch.device]]:
    """Join the torchrun job (if any) for the duration of the block; yields (dist, device).

    Without torchrun's variables (``WORLD_SIZE`` unset or 1) this is a single process and
    nothing is initialised. If the caller already initialised a process group it is used and
    left open. Collective failures inside the block are raised as ``DistributedError``.
    """
    rank, world_size, local_rank = env_rank()
    if world_size <= 1:
        yield Distributed(), device
        return
    device = rank_device(device, local_rank)
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s())
        )
    try:
        yield Distributed(rank, world_size, local_rank), device
    except RuntimeError as e:
        if not is_collective_failure(e):
            raise
        raise DistributedError(
            f"rank {rank} of {world_size}: a collective operation failed: another rank died, "
            f"stalled for more than {timeout_s():g}s ({TIMEOUT_ENV}), or the network between "
            f"ranks broke (cause: {e})"
        ) from e
    finally:
        if owned:
            dist.destroy_process_group()

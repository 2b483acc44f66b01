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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from hydrarec.errors import HydrarecError
from hydrarec.tasks.collectives import keep, release_kept

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

    def wrap(
        self, module: nn.Module, device: torch.device, own: Iterable[Tensor] = ()
    ) -> nn.Module:
        """``module`` in DDP when distributed (gradients averaged over ranks in backward).

        ``static_graph``: the same parameters take part in every step (a task without labels in
        a batch still contributes a zero loss), so DDP learns the set once, also when a part is
        never used (e.g. an architecture's layer no task reads), instead of walking the autograd
        graph each step as ``find_unused_parameters`` does.

        ``own``: parameters whose gradients the caller averages itself after the backward (the
        sparse embedding tables, see ``average_sparse_gradients``). DDP ignores them; rank 0's
        values are broadcast here, as DDP does for the rest.
        """
        if not self.enabled:
            return module
        own_ids = {id(p) for p in own}
        ignored = [(name, p) for name, p in module.named_parameters() if id(p) in own_ids]
        if ignored:
            names = [name for name, _ in ignored]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)
            for _, p in ignored:
                dist.broadcast(p.data, src=0)
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
            if p.grad is not None and not p.grad.is_sparse:  # sparse: average_sparse_gradients
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.world_size)

    def average_sparse_gradients(self, params: Sequence[Tensor]) -> None:
        """Average the sparse row gradients of embedding tables over ranks, with dense
        collectives only: each rank's coalesced (rows, values) are padded to the largest row
        count, all-gathered, concatenated and coalesced again, then divided by the world size.

        This replaces DDP's own sparse all-reduce (gloo's allgatherv of sparse tensors), which
        aborted one CI run with heap corruption ("malloc(): unaligned tcache chunk detected") and
        which NCCL does not offer at all: here the tables stay sparse under either backend. A
        rank whose batch touched no row of a table (no gradient, or only the padding row) sends
        zero rows. Every rank must call this with the same parameters in the same order.
        """
        if not self.enabled or not params:
            return
        grads = [_coalesced_rows(p) for p in params]
        device = params[0].device
        counts = torch.tensor([len(rows) for rows, _ in grads], dtype=torch.long, device=device)
        per_rank = [torch.empty_like(counts) for _ in range(self.world_size)]
        dist.all_gather(per_rank, counts)
        keep(counts, per_rank)
        table = torch.stack(per_rank).tolist()  # [rank][parameter] -> rows sent
        for j, (p, (rows, values)) in enumerate(zip(params, grads, strict=True)):
            n = [table[r][j] for r in range(self.world_size)]
            width = max(n)
            if width == 0:
                p.grad = None  # no rank touched the table: nothing to update
                continue
            rows_out = [rows.new_zeros(width) for _ in n]
            values_out = [values.new_zeros((width, *values.shape[1:])) for _ in n]
            rows_in, values_in = _pad(rows, width), _pad(values, width)
            dist.all_gather(rows_out, rows_in)
            dist.all_gather(values_out, values_in)
            keep(rows_in, values_in, rows_out, values_out)
            all_rows = torch.cat([t[:k] for t, k in zip(rows_out, n, strict=True)])
            all_values = torch.cat([t[:k] for t, k in zip(values_out, n, strict=True)])
            # rows from coalesced gradients of this very table: in range by construction
            grad = torch.sparse_coo_tensor(
                all_rows[None], all_values, p.shape, check_invariants=False
            )
            p.grad = grad.coalesce().div_(self.world_size)

    def mean(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """``sum(sums) / sum(count)`` over ranks, per key (every rank holds the same keys)."""
        if not self.enabled:
            return {k: v / max(count, 1) for k, v in sums.items()}
        keys = sorted(sums)  # the same order on every rank
        t = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        keep(t)
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


def _coalesced_rows(p: Tensor) -> tuple[Tensor, Tensor]:
    """The (rows, values) of ``p``'s sparse row gradient, coalesced; none if it has no gradient.

    >>> w = torch.zeros(4, 1, requires_grad=True)
    >>> rows, values = [[3, 1, 3]], [[1.0], [2.0], [4.0]]
    >>> w.grad = torch.sparse_coo_tensor(rows, values, (4, 1), check_invariants=True)
    >>> rows, values = _coalesced_rows(w)
    >>> rows.tolist(), values.flatten().tolist()
    ([1, 3], [2.0, 5.0])
    """
    if p.grad is None:
        return torch.zeros(0, dtype=torch.long, device=p.device), p.new_zeros((0, *p.shape[1:]))
    grad = p.grad.coalesce()
    return grad.indices()[0], grad.values()


def _pad(t: Tensor, n: int) -> Tensor:
    """``t`` with zero rows appended up to ``n`` rows (all-gather needs equal shapes)."""
    return torch.cat([t, t.new_zeros((n - len(t), *t.shape[1:]))]) if len(t) < n else t


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
            release_kept()

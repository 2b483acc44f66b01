"""Collectives a task runs itself (retrieval's ``gather_negatives``, issue 7), beside the tasks
rather than in the training loop; ``training/distributed.py`` uses ``keep`` for its own too."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor

# the tensors of the latest collectives (see ``keep``)
_KEPT: deque[tuple[Any, ...]] = deque(maxlen=8)


def keep(*tensors: Any) -> None:
    """Keep Python's references to the tensors (or lists of them) of a collective past the call.

    gloo's worker thread drops its own reference to a finished operation a moment after the
    caller has been woken. If Python has let go of a tensor by then, that drop is the last one
    and frees the tensor's Python object, for which the worker must take the GIL; should the main
    thread hold the GIL while it joins that worker (the process group's destructor, run when DDP's
    reducer is freed at the end of a job), both wait forever. This hung a 2-rank benchmark once:
    ``~ProcessGroupGloo`` joining a worker blocked in ``gil_scoped_acquire``. Keeping the tensors
    of the last 8 collective calls makes every worker's drop a non-final one; ``release_kept``
    lets go of them once the group is gone.
    """
    _KEPT.append(tensors)


def release_kept() -> None:
    """Let go of the tensors ``keep`` holds (after the process group is destroyed)."""
    _KEPT.clear()


def all_gather_rows(x: Tensor, pad: float, grad: bool) -> Tensor:
    """Rows of ``x`` from every rank in rank order, each rank's block padded with ``pad`` to the
    longest: (W * M, ...). With ``grad`` the gradient flows back to each rank's own rows."""
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    keep(n, sizes)
    longest = int(torch.stack(sizes).max())
    x = F.pad(x, (0, 0) * (x.dim() - 1) + (0, longest - x.shape[0]), value=pad)  # (M, ...)
    if grad:
        gathered = dist_fn.all_gather(x)
        keep(x, gathered)
        return torch.cat(gathered)
    blocks = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(blocks, x)
    keep(x, blocks)
    return torch.cat(blocks)

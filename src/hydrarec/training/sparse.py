"""Sparse updates of embedding tables (issue 7): only the rows a batch looked up are touched.

With dense tables, every step AdamW reads and writes every row of every id table (parameter, two
moments, weight decay) and gradient clipping takes the norm of the whole table's gradient, most
of it zeros, so the step time grows with the catalogue, not the batch (issue 7). Here the
selected ``nn.Embedding`` modules are switched to ``sparse=True``: their backward yields a sparse
gradient holding only the looked-up rows, and ``torch.optim.SparseAdam`` updates those rows
("lazy Adam", as TensorFlow Addons' ``LazyAdam``: the moments of untouched rows are not decayed).
Everything else keeps AdamW.

Which tables: ``train.sparse_embeddings = true`` every ``nn.Embedding`` of the model, ``false``
none, unset (None) those with at least ``SPARSE_MIN_ROWS`` rows, i.e. the id tables of large
catalogues; small vocabularies (MovieLens users and items, genres, positions) stay dense and
keep their results. The choice is by module type and size only: the trainer never asks which
model it trains.

What changes for a sparse table:

- **no weight decay** on its rows (SparseAdam has none; decaying only the touched rows would
  shrink popular rows most, the reverse of what L2 on a dense table does);
- **gradient clipping** takes one norm over the dense and the (coalesced) sparse gradients, the
  same number as the dense path would compute, since untouched rows have zero gradient;
- **DDP**: the sparse tables are left out of DDP's reducer; after the backward the trainer
  averages their row gradients with ``Distributed.average_sparse_gradients`` (dense all-gathers
  of each rank's touched rows), the same collectives under gloo and NCCL (the NCCL path is
  untested here: no GPU). DDP's own sparse path (gloo's sparse all-reduce) aborted a CI run with
  heap corruption and does not exist in NCCL.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

SPARSE_MIN_ROWS = 100_000  # sparse_embeddings unset: tables with at least this many rows


def sparse_tables(model: nn.Module, setting: bool | None) -> list[nn.Embedding]:
    """The embedding tables to update sparsely (see the module doc), in module order.

    >>> m = nn.ModuleList([nn.Embedding(10, 2), nn.Linear(2, 2), nn.Embedding(SPARSE_MIN_ROWS, 2)])
    >>> [t.num_embeddings for t in sparse_tables(m, None)], len(sparse_tables(m, True))
    ([100000], 2)
    """
    if setting is False:
        return []
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if setting is None:
        tables = [t for t in tables if t.num_embeddings >= SPARSE_MIN_ROWS]
    return tables


def sparse_parameters(model: nn.Module, setting: bool | None) -> list[Tensor]:
    """Switch the selected tables to sparse gradients; their weights (for ``SparseAdam``), each
    once (a table may be shared)."""
    params: dict[int, Tensor] = {}
    for t in sparse_tables(model, setting):
        t.sparse = True
        params[id(t.weight)] = t.weight
    return list(params.values())


@torch.no_grad()
def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """``nn.utils.clip_grad_norm_`` (L2) that also accepts sparse gradients.

    A sparse gradient may list a row several times (one entry per lookup: row 0 twice below,
    1 + 2 = 3); it is coalesced first (replacing ``.grad``), so its norm is that of the summed
    rows, as for the dense gradient: sqrt(3^2 + 4^2) = 5.

    >>> w = nn.Parameter(torch.zeros(3, 1))
    >>> rows, values = [[0, 0, 2]], [[1.0], [2.0], [4.0]]
    >>> w.grad = torch.sparse_coo_tensor(rows, values, (3, 1), check_invariants=True)
    >>> float(clip_grad_norm([w], 1.0)), [round(x, 4) for x in w.grad.to_dense().flatten().tolist()]
    (5.0, [0.6, 0.0, 0.8])
    """
    grads = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.zeros(())
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), 2.0).float() for g in grads])
    total = torch.linalg.vector_norm(norms, 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device, g.dtype))
    return total

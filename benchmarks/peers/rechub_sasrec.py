"""torch-rechub's SASRec (Kang & McAuley, ICDM 2018) for next-item prediction.

The model is torch-rechub's ``SASRec`` unchanged; the loop follows the SASRec paper (and its
reference code): each user's train sequence is cut into windows of ``max_len + 1`` items from the
end, each position predicts the next item against one random negative the user has not seen
(binary cross-entropy on the two logits, padding masked), Adam. torch-rechub's ``MatchTrainer``
is not used: its pairwise mode averages over padding positions too. Epochs are chosen on valid
(scored every ``EVERY`` epochs, stopped after ``PATIENCE`` evaluations without gain); at test the
user's sequence also holds the valid item. The weights are not refit, unless ``Params.refit``:
then a fresh model (same seed) is trained for the best epoch count on windows of train + valid
and scored on test instead (what ``train.refit`` does for hydrarec).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from peers.common import Result, SplitData, rank_eval

EVERY, PATIENCE = 5, 4


@dataclass(frozen=True)
class Params:
    max_len: int = 50
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    budget_s: float = 0.0  # stop after this many training seconds (0: no limit); best-on-valid kept
    refit: bool = False  # retrain on train + valid for the best epoch count, then test


def sequences(data: SplitData, parts: tuple[str, ...]) -> list[np.ndarray]:
    """Each user's items in ``parts``, oldest first, as 1-based ids (0 pads)."""
    known = data.known(*parts)
    return [known.items[known.indptr[u] : known.indptr[u + 1]] + 1 for u in range(data.n_users)]


def windows(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """(W, max_len + 1) right-padded windows cut from the end of every sequence."""
    out = []
    for s in seqs:
        for end in range(len(s), 1, -max_len):
            w = s[max(0, end - max_len - 1) : end]
            out.append(np.pad(w, (0, max_len + 1 - len(w))))
    return np.stack(out)


def last_items(seqs: list[np.ndarray], max_len: int) -> torch.Tensor:
    """(U, max_len) right-padded last ``max_len`` items of every user."""
    return torch.as_tensor(
        np.stack([np.pad(s[-max_len:], (0, max_len - len(s[-max_len:]))) for s in seqs])
    )


def build(n_items: int, p: Params) -> Any:
    from torch_rechub.basic.features import SequenceFeature
    from torch_rechub.models.matching import SASRec

    feats = [
        SequenceFeature("seq", vocab_size=n_items + 1, embed_dim=p.dim, pooling="concat"),
        SequenceFeature(
            "pos", vocab_size=n_items + 1, embed_dim=p.dim, pooling="concat", shared_with="seq"
        ),
        SequenceFeature(
            "neg", vocab_size=n_items + 1, embed_dim=p.dim, pooling="concat", shared_with="seq"
        ),
    ]
    return SASRec(
        feats, max_len=p.max_len, dropout_rate=p.dropout, num_blocks=p.blocks, num_heads=p.heads
    )


def vectors(model: Any, seqs: list[np.ndarray], p: Params) -> tuple[np.ndarray, np.ndarray]:
    """User vectors (last position's output) and item embeddings (pad row dropped)."""
    model.eval()
    model.mode = "user"
    with torch.no_grad():
        u = torch.cat([model({"seq": b}) for b in last_items(seqs, p.max_len).split(256)])
    model.mode = None
    items = model.item_emb.embed_dict["seq"].weight[1:].detach()
    return u.numpy(), items.numpy()


def train_epoch(
    model: Any,
    opt: Any,
    wins: np.ndarray,
    seen: list[set[int]],
    users: np.ndarray,
    p: Params,
    rng: np.random.Generator,
    n_items: int,
) -> None:
    model.train()
    for idx in np.array_split(rng.permutation(len(wins)), max(1, len(wins) // p.batch_size)):
        w = wins[idx]
        seq, pos = torch.as_tensor(w[:, :-1]), torch.as_tensor(w[:, 1:])
        neg = rng.integers(1, n_items + 1, size=pos.shape)
        for r, u in enumerate(users[idx]):  # resample negatives the user has seen
            bad = np.isin(neg[r], list(seen[u]))
            while bad.any():
                neg[r, bad] = rng.integers(1, n_items + 1, size=int(bad.sum()))
                bad = np.isin(neg[r], list(seen[u]))
        pl, nl = model({"seq": seq, "pos": pos, "neg": torch.as_tensor(neg) * (pos > 0)})
        mask = (pos > 0).float()
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        loss = bce(pl, torch.ones_like(pl), reduction="none") + bce(
            nl, torch.zeros_like(nl), reduction="none"
        )
        loss = (loss * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def training_windows(seqs: list[np.ndarray], p: Params) -> tuple[np.ndarray, np.ndarray]:
    """The windows of ``seqs`` and the user each belongs to."""
    owner = np.repeat(np.arange(len(seqs)), [max(0, -(-(len(s) - 1) // p.max_len)) for s in seqs])
    return windows(seqs, p.max_len), owner


def fresh(data: SplitData, seed: int, p: Params) -> tuple[Any, Any, np.random.Generator]:
    """A new model, its Adam and the negative sampler's generator, all from ``seed``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(data.n_items, p)
    return model, torch.optim.Adam(model.parameters(), lr=p.lr, betas=(0.9, 0.98)), rng


def run(data: SplitData, seed: int = 0, p: Params | None = None) -> Result:
    import time

    p = p or Params()
    train_seqs = sequences(data, ("train",))
    wins, owner = training_windows(train_seqs, p)
    seen = [set(s.tolist()) for s in sequences(data, ("train", "valid", "test"))]
    model, opt, rng = fresh(data, seed, p)
    best, best_state, best_epoch, bad, start = -1.0, None, 0, 0, time.perf_counter()
    for epoch in range(1, p.max_epochs + 1):
        train_epoch(model, opt, wins, seen, owner, p, rng, data.n_items)
        if epoch % EVERY:
            continue
        ndcg = rank_eval(data, *vectors(model, train_seqs, p), "valid")["ndcg@10"]
        print(
            f"    epoch {epoch}: valid ndcg@10 {ndcg:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        if ndcg > best:
            best, best_state, best_epoch, bad = ndcg, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
        if bad >= PATIENCE or (p.budget_s and time.perf_counter() - start > p.budget_s):
            break
    model.load_state_dict(best_state)
    name, note = "torch-rechub SASRec", f"epochs chosen on valid (every {EVERY})"
    if p.refit:  # the same training from scratch on train + valid, for the chosen epochs
        model, opt, rng = fresh(data, seed, p)
        wins, owner = training_windows(sequences(data, ("train", "valid")), p)
        for _ in range(best_epoch):
            train_epoch(model, opt, wins, seen, owner, p, rng, data.n_items)
        name, note = f"{name} (refit)", f"{note}; refit on train+valid for {best_epoch} epochs"
    secs = time.perf_counter() - start
    test = rank_eval(data, *vectors(model, sequences(data, ("train", "valid")), p), "test")
    params = {**p.__dict__, "best_epoch": best_epoch}
    note += "; seconds include validation"
    return Result(name, test, secs, params, {"ndcg@10": best}, note)

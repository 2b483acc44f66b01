"""How much of the exact answer an approximate item index finds on a trained run (issue 5).

For every known user of the run, seen items excluded as served: stage one's recall of the exact
top 10 and top ``--candidates`` (the candidates re-ranked by stage two), and how many of the
served top 10 after re-ranking are the exact index's. The contract tests hold every index to
>= 95 % of the exact top 10 on synthetic sets; this is the same question on learned embeddings.

    HYDRAREC_DATA_DIR=/work/shared/data python benchmarks/index_recall.py /tmp/loo40
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hydrarec.recommend.recommender import Recommender


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the share of ``b``'s filled entries that ``a`` holds too."""
    out = []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        want = {i for i in y if i >= 0}
        out.append(len(want & set(x)) / max(len(want), 1))
    return np.array(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run")
    p.add_argument("--indexes", nargs="+", default=["faiss_hnsw", "faiss_ivf"])
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    exact = Recommender.load(args.run, index="exact")
    users = np.arange(len(exact.run.user_ids))
    print(f"{args.run}: {len(users)} users, {exact.n_items} items, seen items excluded")
    print("| index | load + build s | recall@10 | recall@candidates (min) | served top 10 same |")
    print("|---|---:|---:|---:|---:|")
    for kind in args.indexes:
        t = time.perf_counter()
        approx = Recommender.load(args.run, index=kind)
        built = time.perf_counter() - t
        r10, rn, served = [], [], []
        for s in range(0, len(users), args.batch):
            u = exact.queries.known_users(users[s : s + args.batch])
            ex = exact._exclusion(u, None, None)
            for k, acc in ((10, r10), (args.candidates, rn)):
                want, _ = exact._retrieve(u.vectors, k, ex, None)
                got, _ = approx._retrieve(u.vectors, k, ex, None)
                acc.append(overlap(got.numpy(), want.numpy()))
            raw = exact.run.user_ids.raw(users[s : s + args.batch])
            served.append(overlap(approx.recommend(raw, 10).items, exact.recommend(raw, 10).items))
        a10, an, sv = (np.concatenate(x) for x in (r10, rn, served))
        print(
            f"| {kind} | {built:.1f} | {a10.mean():.3f} | {an.mean():.3f} ({an.min():.3f}) "
            f"| {sv.mean():.3f} |"
        )


if __name__ == "__main__":
    main()

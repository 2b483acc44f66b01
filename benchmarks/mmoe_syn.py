"""MMOE-SYN: the synthetic experiment of the MMoE paper, on hydrarec's own architectures.

Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
KDD 2018, section 3 (data) and 4.3 (models): two regression tasks whose label functions share a
weight direction with cosine ``p``; as ``p`` falls, a shared bottom should suffer more than MMoE.

Models, as in the paper: independent per-task MLPs ("single"), a shared bottom of 113 hidden units,
MMoE with 8 experts of 16 units; 8-unit task towers; a linear regression head per task; Adam, MSE.
The same data (``hydrarec.data.mmoe_synthetic``) and the same seed drive every model. Reported: the
test MSE averaged over the two tasks, mean and standard deviation over seeds, per correlation.

    python benchmarks/mmoe_syn.py --seeds 3 --plot benchmarks/plots/mmoe_syn.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from hydrarec.architectures import build_architecture
from hydrarec.config import ArchitectureConfig
from hydrarec.data.mmoe_synthetic import mmoe_synthetic

ARCHS: dict[str, ArchitectureConfig] = {
    "single": ArchitectureConfig(name="single", hidden=[113], tower=[8], dropout=0.0),
    "shared_bottom": ArchitectureConfig(name="shared_bottom", hidden=[113], tower=[8], dropout=0.0),
    "mmoe": ArchitectureConfig(name="mmoe", hidden=[16], experts=8, tower=[8], dropout=0.0),
}
CORRELATIONS = (1.0, 0.9, 0.5, 0.0)


@dataclass(frozen=True)
class Setting:
    n_train: int = 10_000
    n_test: int = 2_000
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3


class Regressor(nn.Module):
    """An architecture plus one linear head per task: x (B, 100) -> (B, 2)."""

    def __init__(self, cfg: ArchitectureConfig, in_dim: int, n_tasks: int = 2) -> None:
        super().__init__()
        self.arch = build_architecture(cfg, in_dim, n_tasks)
        self.heads = nn.ModuleList(nn.Linear(self.arch.out_dim, 1) for _ in range(n_tasks))

    def forward(self, x: Tensor) -> Tensor:
        outs = self.arch(x)  # n_tasks x (B, H)
        return torch.cat([h(o) for h, o in zip(self.heads, outs, strict=True)], dim=1)  # (B, T)


def run_one(arch: str, correlation: float, seed: int, s: Setting) -> float:
    """Test MSE (mean of the two tasks) of ``arch`` trained on one synthetic dataset."""
    x, y = mmoe_synthetic(s.n_train + s.n_test, correlation, seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    x_tr, y_tr, x_te, y_te = xt[: s.n_train], yt[: s.n_train], xt[s.n_train :], yt[s.n_train :]
    torch.manual_seed(seed)
    model = Regressor(ARCHS[arch], x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(s.epochs):
        model.train()
        for idx in torch.randperm(s.n_train, generator=gen).split(s.batch_size):
            loss = nn.functional.mse_loss(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x_te), y_te))


def sweep(seeds: int, s: Setting) -> dict[str, dict[float, list[float]]]:
    """Test MSE of every architecture at every correlation, one entry per seed."""
    out: dict[str, dict[float, list[float]]] = {a: {} for a in ARCHS}
    for p in CORRELATIONS:
        for arch in ARCHS:
            out[arch][p] = [run_one(arch, p, seed, s) for seed in range(seeds)]
            m, sd = _mean_std(out[arch][p])
            print(f"  p={p:.1f} {arch:>13}: test MSE {m:.4f} ± {sd:.4f}", flush=True)
    return out


def _mean_std(v: list[float]) -> tuple[float, float]:
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def rows(res: dict[str, dict[float, list[float]]], seconds: float, seeds: int) -> list[str]:
    """Markdown rows: one per architecture, the MSE at each correlation."""
    head = " | ".join(f"MSE p={p}" for p in CORRELATIONS)
    lines = [
        f"| protocol | system | {head} | seeds | seconds (all) |",
        "|---" * (4 + len(CORRELATIONS)) + "|",
    ]
    for arch, per_p in res.items():
        cells = " | ".join("{:.4f} ± {:.4f}".format(*_mean_std(per_p[p])) for p in CORRELATIONS)
        lines.append(f"| MMOE-SYN | hydrarec {arch} | {cells} | {seeds} | {seconds:.0f} |")
    return lines


def gap_rows(res: dict[str, dict[float, list[float]]]) -> list[str]:
    """Paired gap shared_bottom - mmoe (same data, same seed): the seed-to-seed spread of the
    data's label scale cancels, which the per-model standard deviations above do not."""
    cells = []
    for p in CORRELATIONS:
        gap = [b - m for b, m in zip(res["shared_bottom"][p], res["mmoe"][p], strict=True)]
        cells.append("{:+.4f} ± {:.4f}".format(*_mean_std(gap)))
    return [f"| MMOE-SYN | gap shared_bottom - mmoe (paired) | {' | '.join(cells)} | | |"]


def plot(res: dict[str, dict[float, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arch, per_p in res.items():
        ps = list(per_p)
        stats = [_mean_std(per_p[p]) for p in ps]
        ax.errorbar(ps, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", label=arch)
    ax.set_xlabel("task correlation p (cosine of task weights)")
    ax.set_ylabel("test MSE (mean of 2 tasks)")
    ax.set_title("MMOE-SYN (Ma et al. 2018, sec. 3)")
    ax.invert_xaxis()
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=Setting.epochs)
    p.add_argument("--n-train", type=int, default=Setting.n_train)
    p.add_argument("--plot", type=Path, default=Path("benchmarks/plots/mmoe_syn.png"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting = Setting(n_train=args.n_train, epochs=args.epochs)
    start = time.perf_counter()
    res = sweep(args.seeds, setting)
    seconds = time.perf_counter() - start
    plot(res, args.plot)
    lines = rows(res, seconds, args.seeds) + gap_rows(res)
    raw = {a: {str(c): v for c, v in per_p.items()} for a, per_p in res.items()}
    args.plot.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print("\n".join(lines))
    print(f"\nplot: {args.plot}; setting: {setting}")
    return lines


if __name__ == "__main__":
    main()

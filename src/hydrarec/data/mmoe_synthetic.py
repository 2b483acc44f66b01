"""The synthetic two-task regression data of the MMoE paper (Ma et al., "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018, section 3.2).

Two orthogonal unit vectors ``u1, u2`` and a correlation score ``p`` give the task weights
``w1 = c u1`` and ``w2 = c (p u1 + sqrt(1 - p^2) u2)``, so ``cos(w1, w2) = p``. With
``x ~ N(0, I)``:

    y_i = w_i^T x + sum_{j=1..m} sin(alpha_j w_i^T x + beta_j) + eps_i,   eps_i ~ N(0, 0.01)

The paper shares ``alpha_j, beta_j`` between the two tasks (they carry no task index) and does not
give their values; we draw them from ``N(0, 1)`` with the seed. ``N(0, 0.01)`` is read as variance
0.01 (noise standard deviation 0.1). The Pearson correlation of ``y1, y2`` grows with ``p`` but is
not equal to it (the sine terms are non-linear).

>>> x, y = mmoe_synthetic(1000, correlation=0.5, seed=0, dim=16)
>>> x.shape, x.dtype, y.shape, y.dtype
((1000, 16), dtype('float32'), (1000, 2), dtype('float32'))
"""

from __future__ import annotations

import numpy as np

from hydrarec.errors import ConfigError

NOISE_STD = 0.1  # the paper's eps ~ N(0, 0.01), 0.01 read as the variance


def mmoe_synthetic(
    n: int, correlation: float, seed: int, dim: int = 100, m: int = 10, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples: features ``X`` float32 (n, dim) and labels ``Y`` float32 (n, 2).

    ``correlation`` is the paper's ``p`` (cosine of the two task weight vectors), ``m`` the number
    of sine terms, ``scale`` the paper's ``c``. The same seed gives the same data.
    """
    if not -1.0 <= correlation <= 1.0:
        raise ConfigError(f"correlation must be in [-1, 1], got {correlation}")
    if dim < 2:
        raise ConfigError(f"dim must be >= 2 (two orthogonal task vectors), got {dim}")
    if n < 1 or m < 0:
        raise ConfigError(f"need n >= 1 and m >= 0, got n={n}, m={m}")
    rng = np.random.default_rng(seed)
    u1, u2 = _orthonormal_pair(dim, rng)
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    alpha = rng.standard_normal(m)
    beta = rng.standard_normal(m)
    x = rng.standard_normal((n, dim))
    y = np.stack([_label(x @ w, alpha, beta, rng) for w in (w1, w2)], axis=1)  # (n, 2)
    return x.astype(np.float32), y.astype(np.float32)


def _orthonormal_pair(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two orthogonal unit vectors in R^dim (QR of a Gaussian matrix)."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, 2)))  # (dim, 2), orthonormal columns
    return q[:, 0], q[:, 1]


def _label(
    dot: np.ndarray, alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``dot + sum_j sin(alpha_j dot + beta_j) + noise`` for ``dot = w^T x`` of shape (n,)."""
    waves = np.sin(dot[:, None] * alpha[None, :] + beta[None, :]).sum(axis=1)  # (n,)
    return dot + waves + NOISE_STD * rng.standard_normal(len(dot))

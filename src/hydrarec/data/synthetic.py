"""Synthetic users, items and multi-task feedback with planted structure (``synthetic`` dataset).

What is planted, so that tests and benchmarks know what a model should find:

- ``n_topics`` topic centres ``c_k`` (norm ~1). Item ``i`` has a topic ``t_i`` and factor
  ``v_i = c_{t_i} + delta_i``; user ``u`` prefers a topic ``p_u`` and has ``w_u = c_{p_u} + eps_u``
  (``planted_factors`` regenerates both matrices).
- Topics drive the item side features: ``genres`` (a list of ``"g{k}"``; the item's own topic
  genre with probability 0.9, others 0.1) and ``title`` (3-6 words, each from the topic's own
  vocabulary ``"w{k}_{j}"``, j < 20, with probability 0.7, else a topic-free filler ``"x{j}"``).
  The topic itself is not a column.
- Users: ``segment`` = ``"s{p_u}"`` with probability 0.8 (else a random topic); ``age`` has a
  topic-dependent mean.
- Item popularity is Zipf (``pop_i ∝ rank_i ** -0.8``, ranks shuffled). User ``u`` interacts with
  ``n_u`` distinct items (``n_u`` heavy-tailed, at least 3 when the budget allows) drawn without
  replacement from ``softmax(w_u·v_i / 0.15 + log pop_i)`` by Gumbel-top-k. Exact over the whole
  catalogue when that is cheap (catalogue <= 4x the candidates a user needs, e.g. the default
  sizes); otherwise over candidates proposed from ``softmax(w_u·c_t / 0.15 + log pop_t)`` x pop
  within the topic, with the residual weight ``exp(w_u·delta_i / 0.15)`` corrected by
  importance resampling (approximate; exact when delta = 0).
- Feedback from the affinity ``a = z(w_u·v_i) - 1.6`` (standardised over random pairs, centred
  near the drawn pairs' mean) and a factor ``q = (quality_i + noise) / sqrt(2)`` independent of
  it: ``click = [a + 0.5 n > 0]``, ``like = [s2 + 0.5 n > 0.25]`` with ``s2 = rho a +
  sqrt(1 - rho^2) q`` (``rho = task_correlation``), ``rating = clip(round(3.5 + 0.9 a + 0.6 n),
  1, 5)``; each ``n`` is fresh N(0, 1) noise. So corr(click, like) rises with ``rho``.
- Timestamps (int64 s) strictly increase within each user, in random item order.

Generation runs in fixed blocks of whole users with their own random streams, so any
``chunk_size`` streams the same rows, and 100M interactions never sit in memory at once.

>>> ds = generate(SyntheticConfig(n_users=20, n_items=30, n_interactions=200, seed=1))
>>> ds.name, len(ds.interactions), ds.n_users, ds.n_items, ds.label_columns
('synthetic', 200, 20, 30, ['rating', 'click', 'like'])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hydrarec.config import SyntheticConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.sampling import alias_draw, alias_table
from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Column, Kind, Schema
from hydrarec.errors import ConfigError

TEMPERATURE = 0.15  # of the softmax over w_u·v_i: a topic match (~1) is worth e^6.7 ~ 800x
ZIPF = 0.8  # popularity exponent over shuffled ranks
ITEM_NOISE = 0.5  # norm of delta_i (topic centres have norm ~1)
USER_NOISE = 0.5  # norm of eps_u
TOPIC_WORDS, FILLER_WORDS = 20, 50  # title vocabularies
MIN_PER_USER = 3  # interactions every user gets when n_interactions allows (leave-last-out)
BLOCK_ROWS = 1 << 18  # interactions per generation block; fixes the random streams
CANDIDATES, CANDIDATE_PAD, DENSE_FACTOR = 4, 8, 4  # proposals per needed item; exact-path rule
DENSE_CELLS = 1 << 22  # user x item scores held at once on the exact path
START, YEAR = 1_577_836_800, 365 * 86_400  # 2020-01-01T00:00:00Z; a user's history <= 2 years
AFFINITY_CENTRE = 1.6  # ~ mean standardised affinity of the drawn pairs: click rate ~ 1/2
LIKE_AT = 0.25  # like threshold: like rate ~ 0.4
_FACTORS, _USERS, _ITEMS, _COUNTS, _STATS, _BLOCKS = range(6)  # independent random streams


@dataclass(frozen=True)
class _World:
    """Everything fixed before interactions are drawn (small: O(users + items))."""

    user_factors: np.ndarray  # (U, d) float32
    item_factors: np.ndarray  # (I, d) float32
    centres: np.ndarray  # (T, d)
    user_topic: np.ndarray  # (U,) int64
    item_topic: np.ndarray  # (I,) int64
    log_pop: np.ndarray  # (I,) float64, log of a distribution
    quality: np.ndarray  # (I,) float64, the like-only factor
    counts: np.ndarray  # (U,) int64, interactions per user
    start: np.ndarray  # (U,) int64, time of a user's first interaction
    gap: np.ndarray  # (U,) int64 >= 60, seconds between a user's interactions
    affinity: tuple[float, float]  # mean and std of w_u·v_i over random pairs
    user_t: np.ndarray  # (d, U) user_factors transposed, for _pair_dot
    item_t: np.ndarray  # (d, I) item_factors transposed
    delta_t: np.ndarray  # (d, I) v_i - c_{t_i} transposed: the within-topic part
    log_topic_pop: np.ndarray  # (T,) log of each topic's share of popularity (-inf: empty)
    topic_tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (members, accept, alias)


def generate(cfg: SyntheticConfig) -> Dataset:
    """The synthetic dataset: users, items and every interaction (see the module doc)."""
    world = _world(cfg)
    inter = pd.concat(list(_blocks(cfg, world)), ignore_index=True)
    return Dataset.build(
        "synthetic", inter, schema(), users=_users(cfg, world), items=_items(cfg, world)
    )


def iter_interaction_chunks(
    cfg: SyntheticConfig, chunk_size: int = 1_000_000
) -> Iterator[pd.DataFrame]:
    """The interactions of ``generate(cfg)`` in order, ``chunk_size`` rows at a time (the last
    chunk may be shorter); memory stays O(chunk_size + users + items)."""
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    pending = pd.DataFrame()
    for frame in _blocks(cfg, _world(cfg)):
        pending = pd.concat([pending, frame], ignore_index=True) if len(pending) else frame
        while len(pending) >= chunk_size:
            yield pending.iloc[:chunk_size].reset_index(drop=True)
            pending = pending.iloc[chunk_size:]
    if len(pending):
        yield pending.reset_index(drop=True)


def planted_factors(cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """The planted user and item factors, float32 (n_users, dim) and (n_items, dim), in index
    order (row ``i`` is raw id ``i + 1``)."""
    f = _factors(cfg)
    return f[0], f[1]


def schema() -> Schema:
    """Columns of the synthetic dataset."""
    return Schema(
        interactions=[
            Column("rating", Kind.REGRESSION),
            Column("click", Kind.BINARY),
            Column("like", Kind.BINARY),
            Column(TIMESTAMP, Kind.TIMESTAMP),
        ],
        users=[
            Column(USER_ID, Kind.ID),
            Column("age", Kind.NUMERIC),
            Column("segment", Kind.CATEGORICAL),
        ],
        items=[
            Column(ITEM_ID, Kind.ID),
            Column("title", Kind.TEXT),
            Column("genres", Kind.MULTI_HOT),
        ],
    )


# --- the fixed world ---------------------------------------------------------------------------


def _rng(cfg: SyntheticConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed % 2**63, *stream])


def _factors(cfg: SyntheticConfig) -> tuple[np.ndarray, ...]:
    """(user_factors, item_factors, centres, user_topic, item_topic, log_pop, quality)."""
    rng, d = _rng(cfg, _FACTORS), cfg.dim
    centres = rng.standard_normal((cfg.n_topics, d)) / np.sqrt(d)  # (T, d), norm ~1
    user_topic = rng.integers(0, cfg.n_topics, cfg.n_users)
    item_topic = rng.integers(0, cfg.n_topics, cfg.n_items)
    users = centres[user_topic] + USER_NOISE * rng.standard_normal((cfg.n_users, d)) / np.sqrt(d)
    items = centres[item_topic] + ITEM_NOISE * rng.standard_normal((cfg.n_items, d)) / np.sqrt(d)
    pop = (rng.permutation(cfg.n_items) + 1.0) ** -ZIPF
    quality = rng.standard_normal(cfg.n_items)
    users, items = users.astype(np.float32), items.astype(np.float32)
    return users, items, centres, user_topic, item_topic, np.log(pop / pop.sum()), quality


def _world(cfg: SyntheticConfig) -> _World:
    if cfg.n_interactions > cfg.n_users * cfg.n_items:
        raise ConfigError(
            f"data.synthetic.n_interactions: {cfg.n_interactions} exceeds n_users * n_items = "
            f"{cfg.n_users * cfg.n_items} (each user interacts with an item at most once)"
        )
    users, items, centres, user_topic, item_topic, log_pop, quality = _factors(cfg)
    rng = _rng(cfg, _COUNTS)
    base = min(MIN_PER_USER, cfg.n_interactions // cfg.n_users, cfg.n_items)
    activity = rng.lognormal(0.0, 1.0, cfg.n_users)
    counts = base + _allocate(cfg.n_interactions - base * cfg.n_users, activity, cfg.n_items - base)
    start = START + rng.integers(0, YEAR, cfg.n_users)
    gap = rng.lognormal(np.log(86_400.0), 1.0, cfg.n_users)  # ~a day, heavy-tailed
    gap = np.clip(gap, 60, np.maximum(60, 2 * YEAR // np.maximum(counts, 1))).astype(np.int64)
    user_t, item_t = np.ascontiguousarray(users.T), np.ascontiguousarray(items.T)
    pairs = _rng(cfg, _STATS).integers(0, [[cfg.n_users], [cfg.n_items]], (2, 8192))
    aff = _pair_dot(user_t, pairs[0], item_t, pairs[1])
    delta_t = np.ascontiguousarray((items - centres[item_topic]).T.astype(np.float32))
    log_topic_pop, tables = _topic_tables(item_topic, np.exp(log_pop), cfg.n_topics)
    return _World(
        users, items, centres, user_topic, item_topic, log_pop, quality, counts, start, gap,
        (float(aff.mean()), float(aff.std()) or 1.0), user_t, item_t, delta_t, log_topic_pop,
        tables,
    )  # fmt: skip


def _topic_tables(
    item_topic: np.ndarray, pop: np.ndarray, n_topics: int
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Log popularity share of each topic, and per topic (members, alias accept, alias)."""
    with np.errstate(divide="ignore"):  # an empty topic: log 0 = -inf, never proposed
        log_topic_pop = np.log(np.bincount(item_topic, pop, minlength=n_topics))
    tables = []
    for t in range(n_topics):
        members = np.flatnonzero(item_topic == t)
        accept, alias = alias_table(pop[members]) if len(members) else (np.zeros(0), members)
        tables.append((members, accept, alias))
    return log_topic_pop, tables


def _allocate(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    """Non-negative int64 counts summing to ``total``, proportional to ``weights``, each <= cap."""
    counts = np.zeros(len(weights), dtype=np.int64)
    left = total
    while left > 0:
        room = cap - counts
        share = np.where(room > 0, weights, 0.0)
        share = left * share / share.sum()
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:  # every share < 1: one each to the `left` largest shares
            add[np.argsort(-share, kind="stable")[:left]] = 1
        counts += add
        left -= int(add.sum())
    return counts


def _users(cfg: SyntheticConfig, world: _World) -> pd.DataFrame:
    rng, n, k = _rng(cfg, _USERS), cfg.n_users, cfg.n_topics
    topic = np.where(rng.random(n) < 0.8, world.user_topic, rng.integers(0, k, n))
    mean_age = 22.0 + 30.0 * world.user_topic / max(k - 1, 1)
    age = np.clip(np.rint(rng.normal(mean_age, 7.0)), 16, 80).astype(np.int64)
    names = np.array([f"s{t}" for t in range(k)], dtype=object)
    return pd.DataFrame({USER_ID: np.arange(1, n + 1), "age": age, "segment": names[topic]})


def _items(cfg: SyntheticConfig, world: _World) -> pd.DataFrame:
    rng, n, k = _rng(cfg, _ITEMS), cfg.n_items, cfg.n_topics
    length = rng.integers(3, 7, n)  # words per title
    owner = np.repeat(world.item_topic, length)
    word = np.where(
        rng.random(len(owner)) < 0.7,
        owner * TOPIC_WORDS + rng.integers(0, TOPIC_WORDS, len(owner)),
        k * TOPIC_WORDS + rng.integers(0, FILLER_WORDS, len(owner)),
    )
    vocab = [f"w{t}_{j}" for t in range(k) for j in range(TOPIC_WORDS)]
    vocab += [f"x{j}" for j in range(FILLER_WORDS)]
    words = np.array(vocab, dtype=object)[word]
    titles = [" ".join(title) for title in np.split(words, np.cumsum(length)[:-1])]
    genre = rng.random((n, k)) < 0.1  # (I, T)
    genre[np.arange(n), world.item_topic] = rng.random(n) < 0.9
    genre[np.arange(n), world.item_topic] |= ~genre.any(axis=1)  # at least one genre
    names = [f"g{t}" for t in range(k)]
    genres = [[names[t] for t in np.flatnonzero(row)] for row in genre]
    return pd.DataFrame({ITEM_ID: np.arange(1, n + 1), "title": titles, "genres": genres})


# --- interactions, block by block --------------------------------------------------------------


def _blocks(cfg: SyntheticConfig, world: _World) -> Iterator[pd.DataFrame]:
    """One frame per block of whole users holding about ``BLOCK_ROWS`` interactions."""
    cum = np.cumsum(world.counts)
    cuts = np.searchsorted(cum, np.arange(BLOCK_ROWS, int(cum[-1]), BLOCK_ROWS), side="left") + 1
    ends = np.unique(np.r_[cuts, len(cum)])
    for b, (u0, u1) in enumerate(zip(np.r_[0, ends[:-1]].tolist(), ends.tolist(), strict=True)):
        yield _block(cfg, world, np.arange(u0, u1), _rng(cfg, _BLOCKS, b))


def _block(
    cfg: SyntheticConfig, world: _World, users: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """The interactions of ``users`` (a contiguous range), by user, oldest first."""
    counts = world.counts[users]
    owner, item = _choose(world, users, counts, rng)  # (R,), grouped by owner
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)  # k-th of user
    user = users[owner]
    gap = world.gap[user]
    ts = world.start[user] + pos * gap + (rng.random(len(user)) * gap).astype(np.int64)
    frame = {USER_ID: user + 1, ITEM_ID: item + 1, TIMESTAMP: ts}
    return pd.DataFrame({**frame, **_feedback(cfg, world, user, item, rng)})


def _choose(
    world: _World, users: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[j]`` distinct items of each ``users[j]``: (owner j, item), grouped by owner in a
    random order within each owner (that order becomes time)."""
    n_items = len(world.item_factors)
    exact = (n_items <= DENSE_FACTOR * (CANDIDATES * counts + CANDIDATE_PAD)) & (counts > 0)
    approx = np.flatnonzero(~exact & (counts > 0))
    o1, i1, short = _sir_topk(world, users[approx], counts[approx], rng)
    exact[approx[short]] = True  # too few distinct candidates: draw these users exactly
    dense = np.flatnonzero(exact)
    o2, i2 = _dense_topk(world, users[dense], counts[dense], rng)
    owner = np.concatenate([approx[o1], dense[o2]])
    item = np.concatenate([i1, i2])
    order = np.argsort(owner + rng.random(len(owner)))  # by owner, shuffled within
    return owner[order], item[order]


def _dense_topk(
    world: _World, users: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Gumbel-top-k over the whole catalogue: (position in ``users``, item)."""
    n_items = len(world.item_factors)
    step = max(1, DENSE_CELLS // n_items)
    owners, items = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for s in range(0, len(users), step):
        u, c = users[s : s + step], counts[s : s + step]
        logits = world.user_factors[u] @ world.item_factors.T / TEMPERATURE  # (b, I)
        keys = logits + world.log_pop + _gumbel(logits.size, rng).reshape(logits.shape)
        top = np.argsort(-keys, axis=1)[:, : int(c.max())]  # (b, max c)
        mask = np.arange(top.shape[1]) < c[:, None]
        owners.append(np.nonzero(mask)[0] + s)
        items.append(top[mask])
    return np.concatenate(owners), np.concatenate(items)


def _sir_topk(
    world: _World, users: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gumbel-top-k over proposed candidates (sampling-importance-resampling).

    A candidate drawn ``m`` times keeps the best of its ``m`` Gumbel keys, i.e. one key plus
    ``log m``: duplicates carry the proposal's weight. Returns (position in ``users``, item) and
    the mask of users with fewer distinct candidates than they need (left for the exact path).
    """
    n_items = len(world.item_factors)
    cand_owner, cand_item = _propose(world, users, CANDIDATES * counts + CANDIDATE_PAD, rng)
    key, mult = np.unique(cand_owner * n_items + cand_item, return_counts=True)
    owner, item = np.divmod(key, n_items)  # sorted by owner
    score = _pair_dot(world.user_t[:, users], owner, world.delta_t, item) / TEMPERATURE
    score += np.log(mult.astype(np.float32)) + _gumbel(len(score), rng)
    distinct = np.bincount(owner, minlength=len(users))
    short = distinct < counts
    span = float(np.ptp(score)) + 1.0 if len(score) else 1.0
    order = np.argsort(owner * span - score)  # by owner, best score first
    owner, item = owner[order], item[order]
    rank = np.arange(len(owner)) - (np.cumsum(distinct) - distinct)[owner]
    keep = (rank < counts[owner]) & ~short[owner]
    return owner[keep], item[keep], short


def _propose(
    world: _World, users: np.ndarray, need: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``need[j]`` candidates per user: a topic from ``softmax(w_u·c_t / T + log pop_t)``, then
    an item of that topic by popularity. Returns (position in ``users``, item)."""
    logits = world.user_factors[users] @ world.centres.T / TEMPERATURE + world.log_topic_pop
    p = np.exp(logits - logits.max(axis=1, keepdims=True))  # (B, T)
    per_topic = rng.multinomial(need, p / p.sum(axis=1, keepdims=True))  # (B, T)
    owners, items = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for t, (members, accept, alias) in enumerate(world.topic_tables):
        if len(members):
            owners.append(np.repeat(np.arange(len(users)), per_topic[:, t]))
            items.append(members[alias_draw(accept, alias, int(per_topic[:, t].sum()), rng)])
    return np.concatenate(owners), np.concatenate(items)


def _feedback(
    cfg: SyntheticConfig,
    world: _World,
    user: np.ndarray,
    item: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """rating / click / like of each (user, item) row; see the module doc."""
    mean, std = world.affinity
    a = (_pair_dot(world.user_t, user, world.item_t, item) - mean) / std - AFFINITY_CENTRE
    noise = rng.standard_normal((4, len(a)))
    q = (world.quality[item] + noise[0]) / np.sqrt(2.0)  # (R,), independent of a, std 1
    rho = cfg.task_correlation
    s2 = rho * a + np.sqrt(1.0 - rho**2) * q  # corr(a, s2) = rho when std(a) = 1
    rating = np.clip(np.rint(3.5 + 0.9 * a + 0.6 * noise[3]), 1, 5)
    return {
        "rating": rating.astype(np.float32),
        "click": (a + 0.5 * noise[1] > 0.0).astype(np.int8),
        "like": (s2 + 0.5 * noise[2] > LIKE_AT).astype(np.int8),
    }


def _pair_dot(a_t: np.ndarray, ia: np.ndarray, b_t: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """``sum_d a_t[d, ia] * b_t[d, ib]`` (float32) from (d, n) float32 layouts: one 1-d gather
    per dimension is ~10x faster than gathering (n, d) rows."""
    out = np.zeros(len(ia), dtype=np.float32)
    for d in range(a_t.shape[0]):
        out += a_t[d][ia] * b_t[d][ib]
    return out


def _gumbel(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` standard Gumbel draws (float32): ``-log E`` with ``E ~ Exp(1)`` (faster than
    ``rng.gumbel``); ``E`` is floored because float32 draws can be exactly 0."""
    e = rng.standard_exponential(n, dtype=np.float32)
    return -np.log(np.maximum(e, np.float32(1e-30)))

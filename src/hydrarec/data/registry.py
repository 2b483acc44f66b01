"""The datasets hydrarec knows by name, where their files are found, and `load_dataset`.

Files are looked for, in order, in an explicit path, ``$HYDRAREC_DATA_DIR/<folder>`` and the cache
``$HYDRAREC_CACHE_DIR/<folder>`` (default ``~/.cache/hydrarec/<folder>``), where
``hydrarec datasets fetch NAME`` puts them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hydrarec.config import DataConfig
from hydrarec.data.checks import Duplicates, require_rows
from hydrarec.data.dataset import Dataset
from hydrarec.data.movielens import (
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_latest_small,
)
from hydrarec.data.schema import USER_ID
from hydrarec.errors import ConfigError, DataError

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetInfo:
    """One named dataset. ``files``: each entry lists alternatives, one of which must exist."""

    name: str
    description: str
    folder: str | None = None  # folder under the data / cache directory; None: generated
    files: tuple[tuple[str, ...], ...] = ()
    url: str | None = None  # the official archive, fetched by `hydrarec datasets fetch`
    loader: Callable[[Path, Duplicates], Dataset] | None = None

    def files_text(self) -> str:
        """The files needed, e.g. 'u.data, u.item, u.user'."""
        return ", ".join(" or ".join(alts) for alts in self.files)


DATASETS: dict[str, DatasetInfo] = {
    "movielens-100k": DatasetInfo(
        "movielens-100k",
        "MovieLens 100K (GroupLens 1998): 100,000 ratings 1-5 by 943 users on "
        "1,682 movies, with user demographics, genres and the canonical u1..u5, ua, ub splits",
        "ml-100k",
        (("u.data",), ("u.item",), ("u.user",), ("u.genre",)),
        GROUPLENS + "ml-100k.zip",
        load_movielens_100k,
    ),
    "movielens-1m": DatasetInfo(
        "movielens-1m",
        "MovieLens 1M (GroupLens 2003): 1,000,209 ratings by 6,040 users on "
        "3,706 movies; without ratings.dat, the implicit (user, movie) pairs",
        "ml-1m",
        (
            ("movies.dat",),
            ("users.dat",),
            ("ratings.dat", "implicit-pairs-parquet/ratings.parquet"),
        ),
        GROUPLENS + "ml-1m.zip",
        load_movielens_1m,
    ),
    "movielens-latest-small": DatasetInfo(
        "movielens-latest-small",
        "MovieLens latest-small (GroupLens 2018): 100,836 ratings "
        "0.5-5 by 610 users on 9,742 movies, with genres and user tags",
        "ml-latest-small",
        (("ratings.csv",), ("movies.csv",)),
        GROUPLENS + "ml-latest-small.zip",
        load_movielens_latest_small,
    ),
    "synthetic": DatasetInfo(
        "synthetic",
        "generated users, items and correlated feedback with planted latent "
        "structure (settings in [data.synthetic])",
    ),
}


def dataset_names() -> list[str]:
    """Names of the known datasets."""
    return list(DATASETS)


def info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of ``name``; an unknown name is a `ConfigError` listing the known ones."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return DATASETS[name]


def cache_dir() -> Path:
    """Where fetched datasets live: ``$HYDRAREC_CACHE_DIR`` or ``~/.cache/hydrarec``."""
    return Path(os.environ.get("HYDRAREC_CACHE_DIR") or Path.home() / ".cache" / "hydrarec")


def candidates(name: str, path: str | Path | None = None) -> list[Path]:
    """The folders searched for ``name``, in order (only ``path`` and ``path/<folder>`` when an
    explicit path is given)."""
    folder = info(name).folder
    if folder is None:
        raise ConfigError(f"dataset {name!r} is generated; it has no files")
    if path is not None:
        return [Path(path), Path(path) / folder]
    env = os.environ.get("HYDRAREC_DATA_DIR")
    return [*([Path(env) / folder] if env else []), cache_dir() / folder]


def locate(name: str, path: str | Path | None = None) -> Path:
    """The folder holding ``name``'s files.

    An explicit ``path`` is either that folder or a directory holding it (``path/<folder>``);
    when given, it is the only place searched. Otherwise ``$HYDRAREC_DATA_DIR/<folder>``, then the
    cache. A missing dataset is a `DataError` listing every place searched and the fetch command.
    """
    places = candidates(name, path)
    for place in places:
        if is_complete(name, place):
            return place
    tried = "\n".join(f"  {p}" for p in places)
    hint = (
        ""
        if path is not None or "HYDRAREC_DATA_DIR" in os.environ
        else ("\n(HYDRAREC_DATA_DIR is not set)")
    )
    raise DataError(
        f"dataset {name!r} not found; searched:\n{tried}{hint}\n"
        f"download it with: hydrarec datasets fetch {name}",
        expected=f"a folder with {info(name).files_text()}",
    )


def is_complete(name: str, folder: Path) -> bool:
    """Whether ``folder`` holds every file ``name`` needs."""
    return folder.is_dir() and all(
        any((folder / f).is_file() for f in alts) for alts in info(name).files
    )


def data_file(file: str, path: str | None = None) -> Path:
    """``file`` as given when absolute, else the first that exists of ``path/file`` (when a path
    is set, the only place), ``$HYDRAREC_DATA_DIR/file`` and ``<cache>/file``. A file found
    nowhere is a `DataError` listing every place searched."""
    given = Path(file).expanduser()
    if given.is_absolute():
        places = [given]
    elif path is not None:
        places = [Path(path) / given]
    else:
        env = os.environ.get("HYDRAREC_DATA_DIR")
        places = [*([Path(env) / given] if env else []), cache_dir() / given, Path.cwd() / given]
    for place in places:
        if place.is_file():
            return place
    tried = "\n".join(f"  {p}" for p in places)
    raise DataError(f"data file {file!r} not found; searched:\n{tried}", expected="a file")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the dataset ``cfg`` names, then drop users below ``min_user_interactions``."""
    if cfg.dataset == "synthetic":
        from hydrarec.data.synthetic import generate  # written separately; imported when used

        dataset = generate(cfg.synthetic)
    elif cfg.dataset == "sequences":
        from hydrarec.data.sequences import load_sequences

        seq = cfg.sequences
        assert seq.file is not None  # DataConfig requires it
        attributes = seq.item_attributes or None  # "" (e.g. from --set): no attribute file
        dataset = load_sequences(
            data_file(seq.file, cfg.path),
            None if attributes is None else data_file(attributes, cfg.path),
            seq.sep,
            name=Path(seq.file).stem,
        )
    elif cfg.dataset == "tabular":
        from hydrarec.data.tabular import load_tabular

        base = Path(cfg.path) if cfg.path else Path.cwd()
        dataset = load_tabular(cfg.tabular, base, duplicates=cfg.duplicates)
    else:
        loader = info(cfg.dataset).loader
        assert loader is not None  # every file-backed dataset has one
        dataset = loader(locate(cfg.dataset, cfg.path), cfg.duplicates)
    return filter_users(dataset, cfg.min_user_interactions)


def filter_users(dataset: Dataset, min_interactions: int) -> Dataset:
    """Drop users with fewer than ``min_interactions`` interactions (and remap given splits)."""
    if min_interactions <= 1:
        return dataset
    inter = dataset.interactions
    counts = inter.groupby("user_idx")["user_idx"].transform("size").to_numpy()
    keep = counts >= min_interactions
    if keep.all():
        return dataset
    kept = inter.loc[keep].drop(columns=["user_idx", "item_idx"])
    require_rows(
        kept,
        "interactions",
        after=f"dropping users with fewer than "
        f"{min_interactions} interactions (the most any user has is {counts.max()})",
    )
    new_row = np.cumsum(keep) - 1  # old row -> new row, where kept
    splits = {
        name: {part: new_row[rows[keep[rows]]].astype(np.int64) for part, rows in parts.items()}
        for name, parts in dataset.given_splits.items()
    }
    users = dataset.users[dataset.users[USER_ID].isin(kept[USER_ID].unique())]
    return Dataset.build(
        dataset.name, kept, dataset.schema, users=users, items=dataset.items, given_splits=splits
    )

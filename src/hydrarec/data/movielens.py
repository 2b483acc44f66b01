"""MovieLens 100K, 1M and latest-small as `Dataset`s.

Harper & Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015.

Every loader keeps the raw ids (ints), the file order of the ratings, ``rating`` as float32 and
``timestamp`` as int64 unix seconds. Multi-hot columns (``genres``, ``tags``) hold Python lists.
``year`` is a float (NaN where unknown). Users carry ``zip_region``, the first character of the zip
code (the US postal region; a letter for the Canadian codes), instead of the near-unique zip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hydrarec.data.checks import Duplicates, Origins, check_labels, resolve_duplicates
from hydrarec.data.coerce import Dtype, Source
from hydrarec.data.dataset import Dataset
from hydrarec.data.delimited import read_text
from hydrarec.data.parquet import read_parquet
from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Column, Kind, Schema
from hydrarec.errors import DataError

RATING = "rating"
GIVEN_100K = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")  # canonical splits shipped with 100K
_RATING_FIELDS: dict[str, Dtype] = {
    USER_ID: "int",
    ITEM_ID: "int",
    RATING: "float",
    TIMESTAMP: "int",
}
_YEAR_IN_TITLE = r"\((\d{4})(?:[-–]\d{4})?\)\s*$"  # "Toy Story (1995)", "Cosmos (1980-1981)"


def load_movielens_100k(path: str | Path, duplicates: Duplicates = "keep_last") -> Dataset:
    """MovieLens 100K from ``path`` (the ``ml-100k`` folder).

    ``given_splits`` holds ``u1``..``u5`` (80,000 / 20,000) and ``ua``, ``ub`` (90,570 / 9,430):
    each ``test`` is read from ``<name>.test`` and matched to ``u.data`` by (user, item), unique in
    100K; ``train`` is every other rating, checked against the line count of ``<name>.base``.
    """
    path = Path(path)
    inter = _ratings(path / "u.data", "\t", "ascii", duplicates)
    users = _users(path / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip"], "str")
    schema = _schema(
        ratings=True, items=[Column("year", Kind.NUMERIC), Column("genres", Kind.MULTI_HOT)]
    )
    return Dataset.build(
        "movielens-100k",
        inter,
        schema,
        users=users,
        items=_items_100k(path),
        given_splits=_given_100k(path, inter),
    )


def load_movielens_1m(path: str | Path, duplicates: Duplicates = "keep_last") -> Dataset:
    """MovieLens 1M from ``path`` (the ``ml-1m`` folder).

    Ratings come from ``ratings.dat`` when present. Otherwise ``implicit-pairs-parquet/
    ratings.parquet`` gives implicit feedback: (user, item) pairs in the original order, with no
    label and no timestamp column. When ``ncf-leave-one-out/ml-1m.test.rating`` is present,
    ``given_splits["ncf"]`` is the NCF benchmark (He et al., WWW 2017): test = each user's listed
    rating, train = every other pair.
    """
    path = Path(path)
    if (path / "ratings.dat").is_file():
        inter, rated = _ratings(path / "ratings.dat", "::", "latin-1", duplicates), True
    elif (path / "implicit-pairs-parquet" / "ratings.parquet").is_file():
        inter, rated = (
            _implicit_pairs(path / "implicit-pairs-parquet" / "ratings.parquet", duplicates),
            False,
        )
    else:
        raise DataError(
            "no ratings found",
            file=path / "ratings.dat",
            expected="ratings.dat or implicit-pairs-parquet/ratings.parquet in " + str(path),
        )
    users = _users(
        path / "users.dat", "::", ["user_id", "gender", "age", "occupation", "zip"], "int"
    )
    movies, _src = read_text(
        path / "movies.dat",
        {ITEM_ID: "int", "title": "str", "genres": "str"},
        sep="::",
        header=False,
        names=[ITEM_ID, "title", "genres"],
        encoding="latin-1",
        quoting=False,
        nullable=["genres"],
    )
    items = _with_year(movies)
    items["genres"] = _split(movies["genres"], "|")
    splits = _given_ncf(path / "ncf-leave-one-out" / "ml-1m.test.rating", inter)
    schema = _schema(
        ratings=rated, items=[Column("year", Kind.NUMERIC), Column("genres", Kind.MULTI_HOT)]
    )
    return Dataset.build(
        "movielens-1m", inter, schema, users=users, items=items, given_splits=splits
    )


def load_movielens_latest_small(path: str | Path, duplicates: Duplicates = "keep_last") -> Dataset:
    """MovieLens latest-small from ``path`` (the ``ml-latest-small`` folder).

    ``movies.csv`` genres become a list ("(no genres listed)" -> []); ``tags.csv`` becomes the item
    column ``tags``: each movie's distinct tags, lower-cased and stripped, one token per tag, in
    order of first use.
    """
    path = Path(path)
    ratings, src = read_text(
        path / "ratings.csv", {"userId": "int", "movieId": "int", RATING: "float", TIMESTAMP: "int"}
    )
    ratings = ratings.rename(columns={"userId": USER_ID, "movieId": ITEM_ID})
    inter = _clean_ratings(ratings, src, duplicates)
    movies, src = read_text(
        path / "movies.csv",
        {"movieId": "int", "title": "str", "genres": "str"},
        nullable=["genres"],
    )
    items = _with_year(movies.rename(columns={"movieId": ITEM_ID}))
    genres = movies["genres"].where(movies["genres"] != "(no genres listed)", None)
    items["genres"] = _split(genres, "|")
    items["tags"] = _tags(path / "tags.csv", items[ITEM_ID])
    schema = _schema(
        ratings=True,
        items=[
            Column("year", Kind.NUMERIC),
            Column("genres", Kind.MULTI_HOT),
            Column("tags", Kind.MULTI_HOT),
        ],
        users=False,
    )
    return Dataset.build("movielens-latest-small", inter, schema, users=None, items=items)


def load_ncf_negatives(path: str | Path, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The NCF benchmark's sampled negatives (``ml-1m.test.negative``) in raw MovieLens ids.

    Returns users (n,) and their negative items (n, 99). NCF numbers users from 0 (MovieLens id
    - 1) and items by first appearance in the ratings (hence ``dataset`` in its file order).
    """
    path = Path(path)
    order = np.asarray(pd.unique(dataset.interactions[ITEM_ID]))
    users, negatives = [], []
    for number, line in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
        if line.strip():
            head, *rest = line.split("\t")
            try:
                users.append(int(head.strip("()").split(",")[0]) + 1)
                negatives.append([int(x) for x in rest])
            except ValueError:
                raise DataError(
                    "malformed line",
                    file=path,
                    line=number,
                    field="negatives",
                    expected="'(user,item)' then tab-separated item numbers",
                ) from None
    return np.asarray(users, dtype=np.int64), order[np.asarray(negatives, dtype=np.int64)]


def _ratings(file: Path, sep: str, encoding: str, duplicates: Duplicates) -> pd.DataFrame:
    df, src = read_text(
        file,
        _RATING_FIELDS,
        sep=sep,
        header=False,
        names=list(_RATING_FIELDS),
        encoding=encoding,
        quoting=False,
    )
    return _clean_ratings(df, src, duplicates)


def _clean_ratings(df: pd.DataFrame, src: Source, duplicates: Duplicates) -> pd.DataFrame:
    labels = {RATING: Kind.REGRESSION}
    df = check_labels(df, labels, src)
    df, _ = resolve_duplicates(
        df, [USER_ID, ITEM_ID, TIMESTAMP], labels, duplicates, Origins([src], [len(df)])
    )
    return df


def _implicit_pairs(file: Path, duplicates: Duplicates) -> pd.DataFrame:
    df, src = read_parquet(file, {"userID": "int", "movieID": "int"})
    df = df.rename(columns={"userID": USER_ID, "movieID": ITEM_ID})
    df, _ = resolve_duplicates(df, [USER_ID, ITEM_ID], {}, duplicates, Origins([src], [len(df)]))
    return df


def _users(file: Path, sep: str, names: list[str], occupation: Dtype) -> pd.DataFrame:
    fields: dict[str, Dtype] = {
        "user_id": "int",
        "age": "int",
        "gender": "str",
        "occupation": occupation,
        "zip": "str",
    }
    df, _ = read_text(
        file, fields, sep=sep, header=False, names=names, quoting=False, encoding="latin-1"
    )
    zip_region = df["zip"].str[0]
    return df.drop(columns="zip").assign(zip_region=zip_region)


def _items_100k(path: Path) -> pd.DataFrame:
    genres, _ = read_text(
        path / "u.genre",
        {"genre": "str", "index": "int"},
        sep="|",
        header=False,
        names=["genre", "index"],
        quoting=False,
    )
    names = genres.sort_values("index")["genre"].tolist()
    flags = [f"g{i}" for i in range(len(names))]
    columns = [ITEM_ID, "title", "release_date", "video_release_date", "url", *flags]
    fields: dict[str, Dtype] = {ITEM_ID: "int", "title": "str", "release_date": "str"}
    fields |= dict.fromkeys(flags, "int")
    df, src = read_text(
        path / "u.item",
        fields,
        sep="|",
        header=False,
        names=columns,
        encoding="latin-1",
        quoting=False,
        nullable=["release_date"],
    )
    dates = pd.to_datetime(df["release_date"], format="%d-%b-%Y", errors="coerce")
    bad = (dates.isna() & df["release_date"].notna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise src.error(
            row,
            "release_date",
            f"bad date {df['release_date'].iloc[row]!r}",
            "a date like 01-Jan-1995",
        )
    on = df[flags].to_numpy() != 0
    lists = [[names[j] for j in np.flatnonzero(row)] for row in on]
    return pd.DataFrame(
        {
            ITEM_ID: df[ITEM_ID],
            "title": df["title"],
            "year": dates.dt.year.astype("float64"),
            "genres": lists,
        }
    )


def _given_100k(path: Path, inter: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    pairs = _pair_index(inter)
    splits: dict[str, dict[str, np.ndarray]] = {}
    for name in GIVEN_100K:
        base, test_file = path / f"{name}.base", path / f"{name}.test"
        if not (base.is_file() and test_file.is_file()):
            continue
        test_df, src = read_text(
            test_file,
            _RATING_FIELDS,
            sep="\t",
            header=False,
            names=list(_RATING_FIELDS),
            quoting=False,
        )
        test = _match(pairs, test_df, src, "u.data")
        train = _complement(len(inter), test)
        raw = base.read_bytes()
        lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
        if lines != len(train):
            raise DataError(
                f"{lines} lines, but u.data minus {test_file.name} has {len(train)}",
                file=base,
                expected=f"{len(train)} ratings",
            )
        splits[name] = {"train": train, "test": test}
    return splits


def _given_ncf(file: Path, inter: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    if not file.is_file():
        return {}
    test_df, src = read_text(
        file, _RATING_FIELDS, sep="\t", header=False, names=list(_RATING_FIELDS), quoting=False
    )
    order = np.asarray(pd.unique(inter[ITEM_ID]))
    out = ((test_df[ITEM_ID] < 0) | (test_df[ITEM_ID] >= len(order))).to_numpy()
    if out.any():
        row = int(np.flatnonzero(out)[0])
        raise src.error(row, "item_id", "NCF item number out of range", f"< {len(order)}")
    raw = pd.DataFrame({USER_ID: test_df[USER_ID] + 1, ITEM_ID: order[test_df[ITEM_ID]]})
    test = _match(_pair_index(inter), raw, src, "the ratings")
    train = _complement(len(inter), test)
    return {"ncf": {"train": train, "test": test}}


def _complement(n: int, rows: np.ndarray) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    return np.flatnonzero(keep).astype(np.int64)


def _pair_index(inter: pd.DataFrame) -> pd.Index:
    index = pd.MultiIndex.from_arrays([inter[USER_ID], inter[ITEM_ID]])
    if not index.is_unique:
        raise DataError(
            "given splits need unique (user, item) pairs",
            field="item_id",
            expected="each user to rate an item once",
        )
    return index


def _match(pairs: pd.Index, df: pd.DataFrame, src: Source, where: str) -> np.ndarray:
    rows = pairs.get_indexer(pd.MultiIndex.from_arrays([df[USER_ID], df[ITEM_ID]]))
    if (rows < 0).any():
        row = int(np.flatnonzero(rows < 0)[0])
        raise src.error(
            row,
            ITEM_ID,
            f"(user, item) = ({df[USER_ID].iloc[row]}, {df[ITEM_ID].iloc[row]}) is not in {where}",
            f"a rating of {where}",
        )
    return np.sort(rows.astype(np.int64))


def _with_year(movies: pd.DataFrame) -> pd.DataFrame:
    year = movies["title"].str.extract(_YEAR_IN_TITLE, expand=False).astype("float64")
    return pd.DataFrame(
        {ITEM_ID: movies[ITEM_ID], "title": movies["title"].str.strip(), "year": year}
    )


def _split(cells: pd.Series, sep: str) -> list[list[str]]:
    return [c.split(sep) if isinstance(c, str) and c else [] for c in cells.tolist()]


def _tags(file: Path, item_ids: pd.Series) -> list[list[str]]:
    if not file.is_file():
        return [[] for _ in range(len(item_ids))]
    tags, _ = read_text(file, {"movieId": "int", "tag": "str"}, nullable=["tag"])
    tags = tags.assign(tag=tags["tag"].str.strip().str.lower()).dropna().drop_duplicates()
    tags = tags[tags["tag"] != ""]
    per_movie = tags.groupby("movieId", sort=False)["tag"].agg(list)
    return [per_movie.get(i, []) for i in item_ids.tolist()]


def _schema(*, ratings: bool, items: list[Column], users: bool = True) -> Schema:
    features = [
        Column("age", Kind.NUMERIC),
        Column("gender", Kind.CATEGORICAL),
        Column("occupation", Kind.CATEGORICAL),
        Column("zip_region", Kind.CATEGORICAL),
    ]
    inter = [Column(RATING, Kind.REGRESSION), Column(TIMESTAMP, Kind.TIMESTAMP)] if ratings else []
    return Schema(
        interactions=inter,
        users=[Column(USER_ID, Kind.ID), *(features if users else [])],
        items=[Column(ITEM_ID, Kind.ID), Column("title", Kind.TEXT), *items],
    )

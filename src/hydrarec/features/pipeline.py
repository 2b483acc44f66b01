"""`FeaturePipeline`: fits every preprocessor of the users and items tables on TRAIN only.

Ids: a user / item that appears in the train interactions gets its own id index; every other one
(only in valid / test, or added later) maps to 1, out of vocabulary, so the model must describe it
by its side features (and text): that is how cold users and items are scored.

Side features: the columns named by ``FeaturesConfig.user`` / ``.item`` (None: every categorical,
numeric and multi-hot column of the schema; text columns belong to the text encoder). They are
fitted on the rows of the users / items that appear in train, not on the whole catalogue, so that
nothing about held-out entities leaks into the vocabularies or scalers.

Encoding per kind: categorical -> ``categorical[name]``; multi-hot -> ``multi_hot[name]``;
numeric -> one column of ``numeric`` (standardized, in ``numeric_names`` order) and, with
``numeric = "bucketize"``, also ``categorical[name + "_bucket"]`` (quantile bucket index).

The fitted state is one JSON file, ``features.json``, written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec.config import FeaturesConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import ITEM_ID, USER_ID, Column, Kind, Schema
from hydrarec.errors import ConfigError, DataError, RunError
from hydrarec.features.batch import EntityFeatures, EntitySpec
from hydrarec.features.encoders import (
    MultiHotEncoder,
    NotFittedError,
    NumericScaler,
    Vocabulary,
    encoder_from_dict,
)
from hydrarec.io.atomic import write_text
from hydrarec.io.progress import SHOW_AFTER_S, Bar, Progress, enclosing_progress
from hydrarec.io.read import read_json_file

FILE = "features.json"
FORMAT = "hydrarec.features/1"
SIDE_KINDS = (Kind.CATEGORICAL, Kind.NUMERIC, Kind.MULTI_HOT)
BUCKET_SUFFIX = "_bucket"


@contextmanager
def naming_feature(name: str) -> Iterator[None]:
    """A value that feature ``name``'s encoder cannot take (a text where a number belongs, a list
    or an object where a category does) is a ``DataError`` that names the feature (issue 21)."""
    try:
        yield
    except DataError as e:
        if e.field is not None:
            raise
        raise DataError(str(e), field=name) from e
    except (TypeError, ValueError) as e:
        raise DataError(f"cannot encode its value ({e})", field=name) from e


@dataclass
class _Feature:
    name: str
    kind: Kind
    encoder: Vocabulary | NumericScaler | MultiHotEncoder


@dataclass
class EntityEncoder:
    """The fitted encoders of one entity (users or items): an id vocabulary and side features."""

    id_column: str
    ids: Vocabulary
    features: list[_Feature]

    def transform(self, table: pd.DataFrame) -> EntityFeatures:
        """Encode ``table`` (one row per entity, in the order given) as tensors."""
        _require_columns(table, [self.id_column] + [f.name for f in self.features])
        out = EntityFeatures(ids=torch.from_numpy(self.ids.transform(table[self.id_column])))
        numeric: list[np.ndarray] = []
        for f in self.features:
            with naming_feature(f.name):
                self._encode(f, table[f.name], out, numeric)
        if numeric:
            out.numeric = torch.from_numpy(np.stack(numeric, axis=1))  # (N, F)
        return out

    @staticmethod
    def _encode(
        f: _Feature, col: pd.Series, out: EntityFeatures, numeric: list[np.ndarray]
    ) -> None:
        if isinstance(f.encoder, NumericScaler):
            numeric.append(f.encoder.standardize(col))
            if f.encoder.mode == "bucketize":
                out.categorical[f.name + BUCKET_SUFFIX] = torch.from_numpy(f.encoder.transform(col))
        elif isinstance(f.encoder, MultiHotEncoder):
            out.multi_hot[f.name] = torch.from_numpy(f.encoder.transform(col))
        else:
            out.categorical[f.name] = torch.from_numpy(f.encoder.transform(col))

    def spec(self) -> EntitySpec:
        categorical: dict[str, int] = {}
        multi_hot: dict[str, int] = {}
        numeric: list[str] = []
        for f in self.features:
            if isinstance(f.encoder, NumericScaler):
                numeric.append(f.name)
                if f.encoder.mode == "bucketize":
                    categorical[f.name + BUCKET_SUFFIX] = f.encoder.size
            elif isinstance(f.encoder, MultiHotEncoder):
                multi_hot[f.name] = f.encoder.size
            else:
                categorical[f.name] = f.encoder.size
        return EntitySpec(
            n_ids=self.ids.size,
            categorical=categorical,
            n_numeric=len(numeric),
            numeric_names=tuple(numeric),
            multi_hot=multi_hot,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id_column": self.id_column,
            "ids": self.ids.to_dict(),
            "features": [
                {"name": f.name, "kind": f.kind.value, "encoder": f.encoder.to_dict()}
                for f in self.features
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntityEncoder:
        feats = [
            _Feature(str(f["name"]), Kind(f["kind"]), encoder_from_dict(f["encoder"]))
            for f in d["features"]
        ]
        return cls(str(d["id_column"]), Vocabulary.from_dict(d["ids"]), feats)


class FeaturePipeline:
    """Fits and applies the feature encoders of users and items (see the module docstring).

    >>> from hydrarec.data.schema import Column, Kind, Schema
    >>> schema = Schema(interactions=[Column("user_id", Kind.ID), Column("item_id", Kind.ID)],
    ...                 items=[Column("item_id", Kind.ID), Column("genre", Kind.CATEGORICAL)])
    >>> ds = Dataset.build("toy", pd.DataFrame({"user_id": [1, 1, 2], "item_id": [7, 8, 9]}),
    ...                    schema, items=pd.DataFrame({"item_id": [7, 8, 9], "genre": list("aab")}))
    >>> p = FeaturePipeline(FeaturesConfig()).fit(ds, train_rows=np.array([0, 1]))
    >>> p.transform_items(ds.items).ids.tolist(), p.item_spec().n_ids
    ([2, 3, 1], 4)
    """

    def __init__(self, config: FeaturesConfig) -> None:
        self.config = config

    def fit(
        self, dataset: Dataset, train_rows: np.ndarray, progress: Progress | None = None
    ) -> FeaturePipeline:
        """Fit on the interactions at ``train_rows`` and the users / items they involve."""
        rows = np.asarray(train_rows, dtype=np.int64)
        if len(rows) == 0:
            raise DataError("no train interactions to fit features on", expected="train rows")
        inter = dataset.interactions
        return self.fit_entities(
            dataset,
            _present(inter["user_idx"].to_numpy(), rows, dataset.n_users),
            _present(inter["item_idx"].to_numpy(), rows, dataset.n_items),
            progress,
        )

    def fit_entities(
        self,
        dataset: Dataset,
        users: np.ndarray,
        items: np.ndarray,
        progress: Progress | None = None,
    ) -> FeaturePipeline:
        """Fit on the users and items at these catalogue indices: those of the train
        interactions (streamed training knows them from its first pass, not from rows).

        Fitting that lasts shows the encoders fitted k/n (issue 22; ``progress`` default: the
        bar open around the call, e.g. "loading data")."""
        if len(users) == 0 or len(items) == 0:
            raise DataError("no train users or items to fit features on", expected="train rows")
        user_rows, item_rows = dataset.users.iloc[users], dataset.items.iloc[items]
        user_columns = _select(dataset.schema, "users", self.config.user)
        item_columns = _select(dataset.schema, "items", self.config.item)
        n = 2 + len(user_columns) + len(item_columns)  # 2: the id vocabularies
        with (progress or enclosing_progress()).task(
            "fitting features", n, delay=SHOW_AFTER_S
        ) as bar:
            self.user_ = self._fit_entity(user_rows, user_columns, USER_ID, bar)
            self.item_ = self._fit_entity(item_rows, item_columns, ITEM_ID, bar)
        return self

    def _fit_entity(
        self, table: pd.DataFrame, columns: list[Column], id_column: str, bar: Bar
    ) -> EntityEncoder:
        _require_columns(table, [id_column] + [c.name for c in columns])
        ids = Vocabulary(min_count=1).fit(table[id_column])
        bar.advance()
        feats = []
        for c in columns:
            with naming_feature(c.name):
                feats.append(_Feature(c.name, c.kind, self._encoder(c).fit(table[c.name])))
            bar.advance()
        return EntityEncoder(id_column, ids, feats)

    def _encoder(self, column: Column) -> Vocabulary | NumericScaler | MultiHotEncoder:
        cfg = self.config
        if column.kind is Kind.NUMERIC:
            return NumericScaler(mode=cfg.numeric, n_buckets=cfg.n_buckets)
        if column.kind is Kind.MULTI_HOT:
            return MultiHotEncoder(cfg.min_count, cfg.max_tokens, sep=column.sep)
        return Vocabulary(min_count=cfg.min_count)

    def transform_users(self, users: pd.DataFrame) -> EntityFeatures:
        """Encoded features of the users in ``users`` (catalogue order when given the catalogue)."""
        return self._fitted("user_").transform(users)

    def transform_items(self, items: pd.DataFrame) -> EntityFeatures:
        """Encoded features of the items in ``items`` (catalogue order when given the catalogue)."""
        return self._fitted("item_").transform(items)

    def user_spec(self) -> EntitySpec:
        return self._fitted("user_").spec()

    def item_spec(self) -> EntitySpec:
        return self._fitted("item_").spec()

    def _fitted(self, attr: str) -> EntityEncoder:
        if not hasattr(self, attr):
            raise NotFittedError("this FeaturePipeline is not fitted yet: call fit(...) first")
        enc: EntityEncoder = getattr(self, attr)
        return enc

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config.model_dump(),
            "user": self._fitted("user_").to_dict(),
            "item": self._fitted("item_").to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePipeline:
        if d.get("format") != FORMAT:
            raise RunError(
                f"not a hydrarec feature state (format {d.get('format')!r}, expected {FORMAT!r})"
            )
        p = cls(FeaturesConfig.model_validate(d["config"]))
        p.user_ = EntityEncoder.from_dict(d["user"])
        p.item_ = EntityEncoder.from_dict(d["item"])
        return p

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/features.json`` atomically (temp file + rename); returns its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)
        write_text(directory / FILE, text)  # mode 0666 less the umask, as open's (issue 21)
        return directory / FILE

    @classmethod
    def load(cls, directory: str | Path) -> FeaturePipeline:
        path = Path(directory) / FILE
        if not path.is_file():
            raise RunError(f"no feature state: {path} does not exist")
        state = read_json_file(path)  # not JSON, not an object: a RunError naming the file
        try:
            return cls.from_dict(state)
        except RunError as e:
            raise RunError(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # edited by hand (issue 21)
            raise RunError(f"{path}: not a feature state ({type(e).__name__}: {e})") from None


def _present(index: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Sorted distinct values of ``index[rows]`` (O(rows + n), no sort, no frame copy)."""
    return np.flatnonzero(np.bincount(np.take(index, rows), minlength=n))


def _select(schema: Schema, kind: str, names: list[str] | None) -> list[Column]:
    """The side-feature columns of ``kind`` to encode: schema order, or the order of ``names``."""
    usable = [c for c in schema.features(kind) if c.kind in SIDE_KINDS]
    if names is None:
        return usable
    field = "features.user" if kind == "users" else "features.item"
    by_name = {c.name: c for c in schema.features(kind)}
    for n in names:
        if n not in by_name:
            known = ", ".join(by_name) or "none"
            raise ConfigError(f"{field}: no {kind} column {n!r} (columns: {known})")
        if by_name[n].kind not in SIDE_KINDS:
            raise ConfigError(
                f"{field}: column {n!r} is {by_name[n].kind.value}; allowed: categorical, "
                "numeric, multi_hot (text columns go to [model.text])"
            )
    return [by_name[n] for n in names]


def _require_columns(table: pd.DataFrame, names: list[str]) -> None:
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", expected=f"columns {names}")

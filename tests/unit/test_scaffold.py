"""``hydrarec init``'s guesses and choices (issue 22): each column's role and kind from a sample,
and configs that load their data and train as written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydrarec.data.registry import load_dataset
from hydrarec.data.splits import make_split
from hydrarec.errors import ConfigError, DataError
from hydrarec.scaffold import Scaffold, scaffold
from hydrarec.scaffold.columns import guess_features, guess_interactions, is_sequence_file


def roles(guesses: list) -> dict[str, tuple[str, str | None]]:
    return {g.column: (g.role, g.kind) for g in guesses}


def text_frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame({k: [str(v) for v in vs] for k, vs in columns.items()})


def test_interaction_columns_by_name_and_values() -> None:
    frame = text_frame(
        userId=[1, 2, 3], movieId=[5, 6, 7],
        when=["2024-01-02T10:00:00", "2024-01-03", "2024-02-01"],
        stars=[4.5, 3, 5], bought=[0, 1, 1], price=[9.99, 12.5, 3.25], shop=["a", "b", "a"],
        order_id=[11, 12, 13],
    )  # fmt: skip
    got = roles(guess_interactions(frame))
    assert got == {
        "userId": ("user_id", None), "movieId": ("item_id", None), "when": ("timestamp", None),
        "stars": ("label", "regression"), "bought": ("label", "binary"),
        "price": ("label", "regression"), "shop": ("ignored", None), "order_id": ("ignored", None),
    }  # fmt: skip
    many = text_frame(u=range(30), item=range(30), price=np.linspace(1, 99, 30).round(2))
    assert roles(guess_interactions(many, user_id="u"))["price"] == ("ignored", None)


def test_unix_seconds_named_like_time_and_numbers_that_are_not() -> None:
    frame = text_frame(
        user=[1, 2], item=[3, 4], timestamp=[881250949, 891717742], year=[1990, 1991]
    )
    got = roles(guess_interactions(frame))
    assert got["timestamp"] == ("timestamp", None)
    assert got["year"] == ("label", "regression")  # 2 values: read as levels; named by the user


def test_missing_id_column_says_which_flag_names_it() -> None:
    with pytest.raises(DataError, match="--item-id COLUMN") as e:
        guess_interactions(text_frame(user=[1], thing=[2]))
    assert "columns: user, thing" in str(e.value)


def test_feature_kinds() -> None:
    frame = text_frame(
        item_id=range(6), title=[f"Movie {i}" for i in range(6)],
        genres=["Action|Comedy", "Drama", "Action|Drama", "Comedy", "Action", "Drama|Comedy"],
        year=[1990, 1991, 1992, 1990, 1995, 1999], zip_code=[10, 11, 10, 12, 11, 10],
        studio=["a", "b", "a", "a", "b", "a"], blank=[""] * 6,
    )  # fmt: skip
    guesses, sep = guess_features(frame, "item_id", "items")
    assert sep == "|"
    assert roles(guesses) == {
        "item_id": ("item_id", None), "title": ("feature", "text"),
        "genres": ("feature", "multi_hot"), "year": ("feature", "numeric"),
        "zip_code": ("feature", "categorical"), "studio": ("feature", "categorical"),
        "blank": ("ignored", None),
    }  # fmt: skip
    users, _ = guess_features(text_frame(user_id=[1], bio=["likes long walks"]), "user_id", "users")
    assert roles(users)["bio"] == ("ignored", None)  # only item text is encoded


def test_sequence_files_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("1 10 11 12\n2 11 13\n")
    (tmp_path / "h.txt").write_text("user item\n1 10\n")
    assert is_sequence_file(tmp_path / "s.txt")
    assert not is_sequence_file(tmp_path / "h.txt")


def interactions(n_users: int = 12, per_user: int = 5, time: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        (u, int(i), 1000 * u + t, int(rng.integers(1, 6)))
        for u in range(n_users)
        for t, i in enumerate(rng.choice(9, per_user, replace=False))
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    return df if time else df.drop(columns="timestamp")


def trains(result: Scaffold) -> None:
    """The written config's data loads and splits with a valid part (what training needs)."""
    ds = load_dataset(result.config.data)
    split = make_split(ds, result.config.data.split)
    assert len(split.train) and len(split.valid) and len(split.test)


def test_without_time_a_random_split_and_no_sequence_encoder(tmp_path: Path) -> None:
    interactions(time=False).to_csv(tmp_path / "r.csv", index=False)
    result = scaffold(tmp_path / "r.csv")
    cfg = result.config
    assert cfg.data.split.kind == "random" and cfg.model.sequence.kind == "none"
    assert cfg.data.tabular.timestamp == ""
    assert [t.kind for t in cfg.tasks] == ["retrieval", "rating"]
    assert cfg.model.architecture.name == "single"
    trains(result)


def test_emphasis_puts_its_task_first(tmp_path: Path) -> None:
    interactions().to_csv(tmp_path / "r.csv", index=False)
    rating = scaffold(tmp_path / "r.csv", emphasis="rating").config
    assert rating.tasks[0].kind == "rating" and rating.train.monitor == "rating/rmse"
    ctr = scaffold(tmp_path / "r.csv", emphasis="ctr").config
    median = float(interactions()["rating"].median())
    assert (ctr.tasks[0].name, ctr.tasks[0].rule) == ("like", f"rating >= {median:g}")
    assert ctr.train.monitor == "like/auc"
    interactions().drop(columns="rating").to_csv(tmp_path / "bare.csv", index=False)
    with pytest.raises(ConfigError, match="--task rating needs a numeric feedback column"):
        scaffold(tmp_path / "bare.csv", emphasis="rating")
    with pytest.raises(ConfigError, match="--task ctr needs a 0/1 feedback column"):
        scaffold(tmp_path / "bare.csv", emphasis="ctr")


def test_split_files_in_a_folder(tmp_path: Path) -> None:
    df = interactions(time=False)
    test = df.groupby("user_id").tail(1)
    df.drop(test.index).to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    test.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    result = scaffold(tmp_path)
    cfg = result.config
    assert (cfg.data.split.kind, cfg.data.split.given) == ("given", "files")
    assert cfg.data.tabular.sep == "\t" and cfg.data.tabular.train == str(tmp_path / "train.tsv")
    trains(result)


def test_items_without_text_get_their_id_in_the_template(tmp_path: Path) -> None:
    interactions().to_csv(tmp_path / "r.csv", index=False)
    items = pd.DataFrame({"item_id": range(8), "title": [f"Film {i}" for i in range(8)]})
    items.loc[3, "title"] = ""  # item 3 has no text, item 8 no row
    items.to_csv(tmp_path / "items.csv", index=False)
    cfg = scaffold(tmp_path / "r.csv", items=tmp_path / "items.csv").config
    assert cfg.model.text.enabled and cfg.model.text.template == "item {item_id}. {title}"
    items.loc[3, "title"] = "Film 3"
    pd.concat([items, pd.DataFrame({"item_id": [8], "title": ["Film 8"]})]).to_csv(
        tmp_path / "items.csv", index=False
    )
    assert scaffold(
        tmp_path / "r.csv", items=tmp_path / "items.csv"
    ).config.model.text.template == ("{title}")


def test_items_table_must_name_its_id_as_the_interactions_do(tmp_path: Path) -> None:
    interactions().to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"movieId": [1], "title": ["x"]}).to_csv(tmp_path / "items.csv", index=False)
    with pytest.raises(DataError, match="rename its column 'movieId' to 'item_id'"):
        scaffold(tmp_path / "r.csv", items=tmp_path / "items.csv")


def test_sequence_file_with_attributes(tmp_path: Path) -> None:
    lines = [f"{u} " + " ".join(str(1 + (u + t) % 9) for t in range(5)) for u in range(1, 13)]
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "attrs.json").write_text(json.dumps({str(i): [i % 3] for i in range(1, 10)}))
    result = scaffold(tmp_path / "seq.txt", items=tmp_path / "attrs.json")
    cfg = result.config
    assert cfg.data.dataset == "sequences" and cfg.data.split.kind == "leave_last_out"
    assert cfg.model.sequence.kind == "transformer" and cfg.model.sequence.max_len == 5
    assert [(t.kind, getattr(t, "feature", None)) for t in cfg.tasks][1] == (
        "reconstruction",
        "attributes",
    )
    trains(result)
    with pytest.raises(DataError, match="item attributes as JSON"):
        scaffold(tmp_path / "seq.txt", items=tmp_path / "seq.txt")

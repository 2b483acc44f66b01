"""The "one user a line" loader (issue 19): tiny generated files, hand-checked contents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hydrarec.config import DataConfig, SplitConfig, load_config
from hydrarec.data.registry import load_dataset
from hydrarec.data.sequences import ATTRIBUTES, load_sequences
from hydrarec.data.splits import make_split
from hydrarec.errors import ConfigError, DataError

SEQS = "1 10 11 12\n2 11 13\n3 12 10 11 13\n"


def _write(tmp_path: Path, text: str, name: str = "s.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_lines_become_interactions_in_file_order(tmp_path: Path) -> None:
    ds = load_sequences(_write(tmp_path, SEQS))
    inter = ds.interactions
    assert inter["user_id"].tolist() == [1, 1, 1, 2, 2, 3, 3, 3, 3]
    assert inter["item_id"].tolist() == [10, 11, 12, 11, 13, 12, 10, 11, 13]
    assert "timestamp" not in inter.columns  # the position is the time
    assert (ds.n_users, ds.n_items) == (3, 4)


def test_leave_last_out_takes_the_last_two_positions(tmp_path: Path) -> None:
    ds = load_sequences(_write(tmp_path, SEQS))
    split = make_split(ds, SplitConfig(kind="leave_last_out"))
    item = ds.interactions["item_id"].to_numpy()
    # user 1: 10 train, 11 valid, 12 test; user 2 has two items: 11 train, 13 test, no valid
    assert item[split.test].tolist() == [12, 13, 13]
    assert item[split.valid].tolist() == [11, 11]
    assert item[split.train].tolist() == [10, 11, 12, 10]


def test_attributes_become_a_multi_hot_item_feature(tmp_path: Path) -> None:
    attrs = _write(tmp_path, json.dumps({"10": [1, 2], "13": [2]}), "a.json")
    ds = load_sequences(_write(tmp_path, SEQS), attrs)
    table = ds.items.set_index("item_id")[ATTRIBUTES]
    assert table.to_dict() == {10: ["1", "2"], 11: [], 12: [], 13: ["2"]}
    assert [c.name for c in ds.schema.features("items")] == [ATTRIBUTES]


@pytest.mark.parametrize(
    ("text", "line", "field", "match"),
    [
        ("1 10 11\n2 x1 12\n", 2, "item", "'x1' is not an integer id"),
        ("1 10 11\nu2 11\n", 2, "user", "'u2' is not an integer id"),
        ("1 10 11\n\n3\n", 3, None, "user 3 has no items"),
        ("1 10\n2 11\n1 12\n", 3, "user", "user 1 already has a line"),
        ("1 10 1.5\n", 1, "item", "'1.5' is not an integer id"),
    ],
)
def test_bad_lines_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str | None, match: str
) -> None:
    with pytest.raises(DataError, match=match) as e:
        load_sequences(_write(tmp_path, text))
    assert (Path(str(e.value.file)).name, e.value.line, e.value.field) == ("s.txt", line, field)
    assert f"s.txt:{line}:" in str(e.value)


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no user lines"):
        load_sequences(_write(tmp_path, "\n\n"))


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_sequences(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"99": [1]}, "item 99 is in no sequence"),
        ({"10": "brand"}, "expected a list of attribute ids"),
        ({"x": [1]}, "item key 'x' is not an integer id"),
        ([1, 2], "expected an object"),
    ],
)
def test_bad_attribute_files_name_the_item(tmp_path: Path, attrs: object, match: str) -> None:
    path = _write(tmp_path, json.dumps(attrs), "a.json")
    with pytest.raises(DataError, match=match) as e:
        load_sequences(_write(tmp_path, SEQS), path)
    assert Path(str(e.value.file)).name == "a.json"


def test_invalid_json_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"10": [1],\n "11": [2\n', "a.json")
    with pytest.raises(DataError, match="not valid JSON") as e:
        load_sequences(_write(tmp_path, SEQS), path)
    assert e.value.line is not None


def test_relative_paths_come_from_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop").mkdir()
    _write(tmp_path / "shop", SEQS, "Shop.txt")
    monkeypatch.setenv("HYDRAREC_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(os.sep)
    ds = load_dataset(DataConfig(dataset="sequences", sequences={"file": "shop/Shop.txt"}))
    assert (ds.name, len(ds.interactions)) == ("Shop", 9)
    absolute = str(tmp_path / "shop" / "Shop.txt")
    monkeypatch.delenv("HYDRAREC_DATA_DIR")
    assert (
        len(
            load_dataset(DataConfig(dataset="sequences", sequences={"file": absolute})).interactions
        )
        == 9
    )
    with pytest.raises(DataError, match="not found; searched"):
        load_dataset(DataConfig(dataset="sequences", sequences={"file": "shop/Other.txt"}))


def test_the_dataset_needs_its_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[data]\ndataset = "sequences"\n[[tasks]]\nname = "r"\nkind = "retrieval"\n',
        "c.toml",
    )
    with pytest.raises(ConfigError, match=r'data.dataset = .sequences. needs the file.*file = "'):
        load_config(path)
    cfg = load_config(path, [f"data.sequences.file={tmp_path / 's.txt'}"])
    assert cfg.data.sequences.file == str(tmp_path / "s.txt")


def test_ids_are_int64(tmp_path: Path) -> None:
    ds = load_sequences(_write(tmp_path, "7 123456789012 5\n"))
    assert ds.interactions["item_id"].dtype == np.int64
    assert ds.item_ids.index([123456789012]).tolist() == [0]

"""Fixtures of the data tests: the real MovieLens files (via HYDRAREC_DATA_DIR) and small generated
files in the MovieLens formats (written to tmp_path; no MovieLens file is ever copied)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hydrarec.data.dataset import Dataset
from hydrarec.data.movielens import load_movielens_100k

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]  # the 19 flags of u.item, in order

# a tiny ML-100K-format folder: 3 users, 3 items, 6 ratings
U_DATA = "1\t1\t5\t100\n1\t2\t3\t101\n2\t1\t4\t102\n2\t3\t1\t103\n3\t2\t2\t104\n3\t3\t5\t105\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|T8H1N\n3|23|M|writer|32067\n"


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(len(GENRES)))


U_ITEM = (
    f"1|Café Society (1995)|01-Jan-1995||http://example.org/1|{_flags(5, 14)}\n"
    f"2|Plain Title (1997)|15-Mar-1997||http://example.org/2|{_flags(1)}\n"
    f"3|unknown||||{_flags(0)}\n"
)


@pytest.fixture
def genres() -> list[str]:
    """The 19 genre names of ML-100K, in flag order."""
    return list(GENRES)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data; these tests need it and fail (never skip) without it."""
    root = os.environ.get("HYDRAREC_DATA_DIR")
    if not root:
        pytest.fail(
            "HYDRAREC_DATA_DIR is not set: point it at the benchmark data folder "
            "(e.g. export HYDRAREC_DATA_DIR=/work/shared/data)",
            pytrace=False,
        )
    path = Path(root)
    if not (path / "ml-100k" / "u.data").is_file():
        pytest.fail(f"HYDRAREC_DATA_DIR={root} has no ml-100k/u.data", pytrace=False)
    return path


@pytest.fixture(scope="session")
def ml100k(data_dir: Path) -> Dataset:
    """The real MovieLens-100K, loaded once."""
    return load_movielens_100k(data_dir / "ml-100k")


@pytest.fixture
def write_ml100k(tmp_path: Path) -> Callable[..., Path]:
    """A factory writing a tiny ML-100K-format folder; any file's text can be replaced."""

    def write(folder: str = "ml-100k", **texts: str) -> Path:
        path = tmp_path / folder
        path.mkdir(parents=True, exist_ok=True)
        files = {
            "u.data": U_DATA,
            "u.user": U_USER,
            "u.item": U_ITEM,
            "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n",
        }
        files.update({k.replace("_", "."): v for k, v in texts.items()})
        for name, text in files.items():
            encoding = "latin-1" if name == "u.item" else "ascii"
            (path / name).write_bytes(text.encode(encoding))
        return path

    return write


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests reading the real files carry the project's ``realdata`` marker."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)

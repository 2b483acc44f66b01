"""fetch() against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pooch
import pytest

from hydrarec.data.fetch import archive_url, fetch
from hydrarec.data.movielens import load_movielens_100k
from hydrarec.errors import ConfigError, DataError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no request log in test output
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder served)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Quiet, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def ml100k_zip(server: tuple[str, Path], write_ml100k) -> str:
    """A generated ML-100K-format archive served as ml-100k.zip; returns its sha256."""
    source = write_ml100k("src/ml-100k")
    archive = server[1] / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(source.iterdir()):
            z.write(f, f"ml-100k/{f.name}")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def test_good_checksum_extracts_a_loadable_folder(server, ml100k_zip: str, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    said: list[logging.LogRecord] = []  # what pooch's logger (printed on stderr) would show
    handler = logging.Handler()
    handler.emit = said.append  # type: ignore[method-assign]
    pooch.get_logger().addHandler(handler)
    out = fetch(
        "movielens-100k",
        dest,
        base_url=server[0],
        progress=False,
        checksums={"ml-100k.zip": f"sha256:{ml100k_zip}"},
    )
    assert out == dest / "ml-100k" and (out / "u.data").is_file()
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k"]  # no temporary files left
    assert len(load_movielens_100k(out).interactions) == 6
    pooch.get_logger().removeHandler(handler)
    assert said == []  # pooch's own "Downloading data from ..." stays quiet


def test_bad_checksum_errors_and_leaves_nothing(server, ml100k_zip: str, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    dest.mkdir()
    with pytest.raises(DataError, match="checksum mismatch: sha256 " + ml100k_zip) as e:
        fetch(
            "movielens-100k",
            dest,
            base_url=server[0],
            progress=False,
            checksums={"ml-100k.zip": "sha256:" + "0" * 64},
        )
    assert e.value.expected is not None and "0" * 64 in e.value.expected
    assert list(dest.iterdir()) == []


def test_bad_checksum_removes_a_root_it_created(server, ml100k_zip: str, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(
            "movielens-100k",
            dest,
            base_url=server[0],
            progress=False,
            checksums={"ml-100k.zip": "md5:" + "0" * 32},
        )
    assert not dest.exists()


def test_pinned_md5_of_the_official_archive_is_checked(
    server, ml100k_zip: str, tmp_path: Path
) -> None:
    # our generated zip is not GroupLens' archive, so the pinned official md5 must reject it
    with pytest.raises(DataError, match="expected md5 0e33842e24a9c977be4e0107933c0723"):
        fetch("movielens-100k", tmp_path / "c", base_url=server[0], progress=False)


def test_published_md5_is_used_when_none_is_pinned(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    archive = served / "ml-latest-small.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\r\n1,1,4,9\r\n")
        z.writestr("ml-latest-small/movies.csv", "movieId,title,genres\r\n1,A (1995),Comedy\r\n")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    (served / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {md5}\n")
    monkeypatch.setenv("HYDRAREC_FETCH_BASE_URL", url)  # the mirror comes from the environment
    out = fetch("movielens-latest-small", tmp_path / "c", progress=False)
    assert (out / "movies.csv").is_file()
    (served / "ml-latest-small.zip.md5").write_text("MD5 (ml-latest-small.zip) = " + "f" * 32)
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch("movielens-latest-small", tmp_path / "c", progress=False, force=True)
    assert (out / "movies.csv").is_file()  # a failed re-fetch keeps the good copy


def test_missing_archive_is_a_clear_error(server, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    with pytest.raises(DataError, match=r"could not download .*ml-1m\.zip"):
        fetch(
            "movielens-1m",
            dest,
            base_url=server[0],
            progress=False,
            checksums={"ml-1m.zip": "sha256:" + "0" * 64},
        )
    assert not dest.exists()


def test_a_complete_folder_is_not_downloaded_again(write_ml100k, tmp_path: Path) -> None:
    folder = write_ml100k("cache/ml-100k")
    # the URL points at a closed port: any download attempt would fail
    assert (
        fetch("movielens-100k", folder.parent, base_url="http://127.0.0.1:9/", progress=False)
        == folder
    )


def test_unsafe_archive_paths_are_refused(server, tmp_path: Path) -> None:
    archive = server[1] / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../evil.txt", "x")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="unsafe path"):
        fetch(
            "movielens-100k",
            tmp_path / "c",
            base_url=server[0],
            progress=False,
            checksums={"ml-100k.zip": f"sha256:{sha}"},
        )
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "c").exists()


def test_archive_url_and_generated_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    official = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    monkeypatch.delenv("HYDRAREC_FETCH_BASE_URL", raising=False)
    assert archive_url(official) == official
    assert archive_url(official, "http://mirror/x") == "http://mirror/x/ml-1m.zip"
    with pytest.raises(ConfigError, match="generated"):
        fetch("synthetic")

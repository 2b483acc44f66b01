"""Every example of docs/data.md runs (issue 22): its data blocks are written to the files they
name, each TOML block loads its data (and trains one epoch when it has tasks), or fails with the
error its ``# error:`` line quotes, and its commands and Python run as shown, in order."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import tomllib
from typer.testing import CliRunner

from hydrarec.cli import app
from hydrarec.config import DataConfig, apply_override, config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.data.splits import make_split
from hydrarec.errors import ConfigError, DataError
from hydrarec.io.progress import Progress
from hydrarec.run.train import train

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


def doc_blocks() -> list[tuple[str, str, str]]:
    """(language, info after it, body) of every fenced block, in order."""
    return [(m[1], m[2].strip(), m[3]) for m in FENCE.finditer(DOC.read_text(encoding="utf-8"))]


def write_file(name: str, body: str) -> None:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":  # shown as CSV in the doc
        path.with_suffix(".csv").write_text(body)
        pd.read_csv(path.with_suffix(".csv")).to_parquet(path, index=False)
    else:
        path.write_text(body)


def check_toml(body: str, n: int) -> None:
    raw = tomllib.loads(body)
    error = re.search(r"^# error: (.+)$", body, re.M)
    count = re.search(r"^# -> (\d+) interactions$", body, re.M)
    try:
        if "tasks" in raw:  # a whole config: train it, briefly
            apply_override(raw, "train.epochs=1")
            run = train(config_from_dict(raw), Path(f"runs/doc{n}"), progress=Progress(False))
            assert "retrieval/ndcg@10" in run.metrics["test"]
        else:
            data = DataConfig.model_validate(raw["data"])
            dataset = load_dataset(data)
            split = make_split(dataset, data.split)
            assert len(split.train) and len(split.test)
            if count:
                assert len(dataset.interactions) == int(count[1])
    except (ConfigError, DataError) as e:
        if error is None:
            raise
        assert error[1] in str(e)
        return
    assert error is None, f"block {n} should fail with: {error[1]}"


def run_commands(body: str) -> None:
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "hydrarec", f"not a hydrarec command: {line}"
        result = CliRunner().invoke(app, words[1:], catch_exceptions=False)
        assert result.exit_code == 0, result.output


def test_every_example_in_docs_data_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRAREC_CACHE_DIR", str(tmp_path / "cache"))
    ran: Counter[str] = Counter()
    for n, (lang, info, body) in enumerate(doc_blocks()):
        file = re.fullmatch(r"file=(\S+)", info)
        if file:
            write_file(file[1], body)
            ran["file"] += 1
        elif lang == "toml":
            check_toml(body, n)
            ran["toml"] += 1
        elif lang == "bash":
            run_commands(body)
            ran["bash"] += 1
        elif lang == "python":
            exec(compile(body, f"{DOC}:block {n}", "exec"), {})  # its asserts are the check
            ran["python"] += 1
        else:
            pytest.fail(f"block {n} ({lang}) names no file and is not run")
    assert ran == {"file": 10, "toml": 7, "bash": 1, "python": 1}

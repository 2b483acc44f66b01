"""``hydrarec report`` and ``hydrarec demo`` (issue 6): every section, images that decode and
render in a real browser, runs with fewer tasks and no titles, the offline demo."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from tests.integration.tiny import tiny_raw
from typer.testing import CliRunner

from hydrarec.cli import app
from hydrarec.config import config_from_dict
from hydrarec.io.progress import Progress
from hydrarec.report import write_report
from hydrarec.report.html import SECTIONS
from hydrarec.run.train import train

PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
PLOTS = ("learning_curves.png", "loss_weights.png", "item_map.png")
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def report_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared tiny run (4 tasks) with its HTML and Markdown reports."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, run)
    write_report(run)
    return run


@pytest.fixture(scope="module")
def cli_markdown(report_run: Path) -> str:
    """``hydrarec report RUN --format md`` on the report run; returns what it printed."""
    return invoke("report", str(report_run), "--format", "md")


@pytest.fixture(scope="module")
def rating_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rating-only run whose item table lost its titles and genres."""
    raw = tiny_raw(epochs=1)
    raw["tasks"] = [{"name": "rating", "kind": "rating", "column": "rating"}]
    raw["recommend"] = {}
    run = tmp_path_factory.mktemp("report") / "rating"
    train(config_from_dict(raw), run, progress=Progress(enabled=False))
    items = pd.read_parquet(run / "data" / "items.parquet")
    items[["item_id"]].to_parquet(run / "data" / "items.parquet", index=False)
    return run


def images(page: str) -> list[np.ndarray]:
    """Every embedded PNG of ``page``, decoded to pixels."""
    return [mpimg.imread(io.BytesIO(base64.b64decode(b)), format="png") for b in PNG.findall(page)]


def test_html_report_has_every_section_and_the_images_decode(report_run: Path) -> None:
    page = (report_run / "report.html").read_text(encoding="utf-8")
    for key, heading in SECTIONS.items():
        assert f"<section id='{key}'><h2>{heading}</h2>" in page
    pixels = images(page)
    assert len(pixels) == len(PLOTS)
    for image in pixels:
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # a drawing, not a blank canvas
    for name in PLOTS:
        assert (report_run / "plots" / name).stat().st_size > 1000
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_html_report_shows_metrics_beside_popularity_and_three_users(report_run: Path) -> None:
    page = (report_run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((report_run / "metrics.json").read_text())
    assert "popularity (test)" in page
    for key in ("retrieval/ndcg@10", "rating/rmse", "like/auc", "genres/loss"):
        assert f"{metrics['test'][key]:.4f}" in page, key
    users = re.findall(r"<h3>user (\S+)</h3>", page)
    assert len(users) == 3 and len(set(users)) == 3
    # each user: a history table and a top-10 with every pointwise task's prediction
    assert page.count("<th>rank</th>") == 3
    assert page.count("<th>like (p)</th>") == 3 and page.count("<th>retrieval (dot)</th>") == 3
    titles = pd.read_parquet(report_run / "data" / "items.parquet")["title"]
    assert sum(html.escape(t, quote=False) in page for t in titles) >= 10


def test_markdown_report_links_the_pngs(report_run: Path, cli_markdown: str) -> None:
    text = (report_run / "report.md").read_text(encoding="utf-8")
    for heading in SECTIONS.values():
        assert f"## {heading}" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(f"plots/{name}" for name in PLOTS)
    assert all((report_run / link).is_file() for link in links)
    assert text.count("### user ") == 3


def test_rating_only_run_without_titles_shows_ids(rating_run: Path) -> None:
    page = (write_report(rating_run)).read_text(encoding="utf-8")
    assert len(images(page)) == len(PLOTS)
    assert "rating/rmse" not in page and "rmse ↓" in page and "popularity (test)" in page
    assert "retrieval" not in re.sub(r"<img[^>]*>", "", page)  # no task that the run lacks
    assert "one colour (the items have no categorical feature)" in page
    assert "<th>title</th>" not in page  # it would only repeat the ids
    ids = {str(i) for i in json.loads((rating_run / "data" / "ids.json").read_text())["items"]}
    # recommendation rows: rank, item id, score, rating prediction
    row = (
        r"<tr><td class='num'>\d+</td><td class='num'>(\d+)</td>"
        + 2 * r"<td class='num'>-?[\d.]+</td>"
    )
    rows = re.findall(row + "</tr>", page)
    assert len(rows) == 30 and set(rows) <= ids


def chromium() -> str:
    """The Chromium binary; missing is a failure, not a skip (CI installs it: .ci/run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed: apt-get install chromium (.ci/run does)"
    return found


def browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    done = subprocess.run(
        [chromium(), *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


CHECK = """<script>
window.addEventListener("load", () => {
  const widths = Array.from(document.images, (i) => i.complete ? i.naturalWidth : 0);
  document.body.setAttribute("data-check", JSON.stringify(
    {widths: widths, text: document.body.innerText.length}));
});
</script></body>"""


def test_report_renders_in_headless_chromium(report_run: Path, tmp_path: Path) -> None:
    # a copy with a probe script: the report itself carries no script
    probe = tmp_path / "probe.html"
    page = (report_run / "report.html").read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", CHECK), encoding="utf-8")
    dom = browse(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, dom[-2000:]
    check = json.loads(html.unescape(found.group(1)))
    assert len(check["widths"]) == len(PLOTS) and all(w > 0 for w in check["widths"])
    assert check["text"] > 1000
    shot = tmp_path / "shot.png"
    url = (report_run / "report.html").as_uri()
    browse(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", url)
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    ink = (pixels.min(axis=2) < 0.8).mean()  # share of pixels that are not near-white
    assert ink > 0.03, f"the page looks blank ({ink:.1%} ink)"


def test_cli_report_prints_its_path_into_the_log(report_run: Path, cli_markdown: str) -> None:
    assert "report written to" in cli_markdown and "report.md" in "".join(cli_markdown.split())
    log = (report_run / "log.txt").read_text(encoding="utf-8").splitlines()
    assert log[-2].startswith("# ") and log[-1].startswith("report written to")


def test_demo_runs_on_synthetic_data_when_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYDRAREC_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HYDRAREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HYDRAREC_FETCH_BASE_URL", "http://127.0.0.1:9")  # refused at once
    out = tmp_path / "demo"
    shrink = ["train.epochs=1", "data.synthetic.n_users=60", "data.synthetic.n_items=40",
              "data.synthetic.n_interactions=1500"]  # fmt: skip
    text = invoke("demo", "--out", str(out), "-q", *(a for s in shrink for a in ("--set", s)))
    flat = " ".join(text.split())
    assert "could not be found or downloaded" in flat
    assert "Running the same pipeline on the synthetic dataset instead" in flat
    assert "hydrarec demo on the synthetic dataset" in flat
    assert "metrics" in flat and "top-10 for user" in flat
    ranks = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") == 5]
    assert ranks == [str(r) for r in range(1, 11)]  # a user with items left to recommend
    assert "report:" in flat and (out / "report.html").is_file()
    log = (out / "log.txt").read_text(encoding="utf-8")
    assert "synthetic dataset instead" in log and "retrieval/ndcg@10" in log
    assert "epoch 1/1:" in log  # the quiet progress still leaves its line
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())

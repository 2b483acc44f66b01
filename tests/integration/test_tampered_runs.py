"""Issue 21, defect 8: a damaged or edited run directory is a RunError naming the file.

One tiny run is trained for the module; each case copies it, damages one file as a broken disk,
a hand edit or an attacker would, and loads it as every user of a run does (Recommender.load,
then a recommendation for a known user and one for a new user given by features). Before the
fix, most cases ended in raw tracebacks (SafetensorError, KeyError, JSONDecodeError, ...), and
NaN weights gave None ids with -inf scores.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.integration.tiny import tiny_config

from hydrarec.errors import DataError, RunError
from hydrarec.io.progress import Progress
from hydrarec.recommend.queries import UserQuery
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.train import train

Tamper = Callable[[Path], None]
Edit = Callable[[dict[str, torch.Tensor]], None]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tampered") / "run"
    train(tiny_config(), out, progress=Progress(enabled=False))
    assert (out / "index" / "vectors.safetensors").is_file()  # the index cases need it
    return out


def use(run: Path) -> None:
    """What the CLI, the service and the report do with a run."""
    rec = Recommender.load(run)
    user = rec.run.user_ids.raw_ids[0]
    ids, scores = rec.recommend([user], k=5)
    assert torch.isfinite(torch.as_tensor(scores)).all() and (ids >= 0).all()  # never None/-inf
    rec.recommend([UserQuery(features={"segment": "s1", "age": 30.0})], k=5)


# -- tampering ------------------------------------------------------------------------------
def truncate(rel: str, keep: float = 0.5) -> Tamper:
    def apply(run: Path) -> None:
        raw = (run / rel).read_bytes()
        (run / rel).write_bytes(raw[: int(len(raw) * keep)])

    return apply


def replace(rel: str, data: bytes) -> Tamper:
    return lambda run: (run / rel).write_bytes(data)


def delete(rel: str) -> Tamper:
    return lambda run: (run / rel).unlink()


def swap(a: str, b: str) -> Tamper:
    def apply(run: Path) -> None:
        (run / a).rename(run / "tmp")
        (run / b).rename(run / a)
        (run / "tmp").rename(run / b)

    return apply


def _loaded(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` copied out of its memory map (rewriting a mapped file would pull
    the pages from under them: a bus error)."""
    return {k: v.clone() for k, v in load_file(str(path)).items()}


def tensors(rel: str, edit: Edit) -> Tamper:
    def apply(run: Path) -> None:
        t = _loaded(run / rel)
        edit(t)
        save_file(t, str(run / rel))

    return apply


def pickled(rel: str) -> Tamper:
    def apply(run: Path) -> None:
        torch.save(_loaded(run / rel), run / rel)  # a zip archive of pickles

    return apply


def json_edit(rel: str, edit: Callable[[dict], object]) -> Tamper:
    def apply(run: Path) -> None:
        obj = json.loads((run / rel).read_text())
        out = edit(obj)
        (run / rel).write_text(json.dumps(obj if out is None else out))

    return apply


def text_edit(rel: str, old: str, new: str) -> Tamper:
    def apply(run: Path) -> None:
        text = (run / rel).read_text()
        assert old in text, f"{old!r} not in {rel}"
        (run / rel).write_text(text.replace(old, new, 1))

    return apply


def first_float(t: dict[str, torch.Tensor], value: float) -> None:
    name = next(k for k, v in t.items() if v.is_floating_point())
    t[name] = t[name].clone()
    t[name].view(-1)[0] = value


def first_key(t: dict[str, torch.Tensor]) -> str:
    return next(iter(t))


def unsafe_text_model(kind: str) -> Tamper:
    """Point model.text.model at a directory that would load pickles or custom code."""

    def apply(run: Path) -> None:
        model = run.parent / f"evil-{kind}"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "bert"}')
        if kind == "bin":
            torch.save({"w": torch.zeros(1)}, model / "pytorch_model.bin")
        else:
            save_file({"w": torch.zeros(1)}, str(model / "model.safetensors"))
            modules = [{"idx": 0, "name": "0", "path": "", "type": "evil_package.Module"}]
            (model / "modules.json").write_text(json.dumps(modules))
        text_edit(CT, 'enabled = false\nmodel = "all-MiniLM-L6-v2"',
                  f'enabled = true\nmodel = "{model}"')(run)  # fmt: skip

    return apply


def parquet_edit(rel: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Tamper:
    def apply(run: Path) -> None:
        edit(pd.read_parquet(run / rel)).to_parquet(run / rel)

    return apply


def set_tensor(name: str | None, make: Callable[[torch.Tensor], torch.Tensor]) -> Edit:
    """Replace tensor ``name`` (the first one when None) by ``make(old)``."""

    def edit(t: dict[str, torch.Tensor]) -> None:
        key = name or next(iter(t))
        t[key] = make(t[key]).contiguous()

    return edit


def all_double(t: dict[str, torch.Tensor]) -> None:
    t.update({k: v.double() for k, v in t.items() if v.is_floating_point()})


M, MJ, CT = "model.safetensors", "model.json", "config.toml"
FU, FI, FJ = "features/users.safetensors", "features/items.safetensors", "features/features.json"
IDS, IT, IN = "data/ids.json", "data/items.parquet", "data/interactions.parquet"
IV, IJ, IS = "index/vectors.safetensors", "index/index.json", "index/source.json"
NAN, INF = float("nan"), float("inf")
CASES: list[tuple[str, Tamper, str]] = [
    # (case, tampering, the file the error must name)
    ("weights truncated", truncate(M), M),
    ("weights 0 bytes", replace(M, b""), M),
    ("weights pickled (torch.save)", pickled(M), M),
    ("weights random bytes", replace(M, bytes(range(256)) * 8), M),
    ("weights header garbage", replace(M, b"\xff" * 8 + b"{not json" + b"\x00" * 64), M),
    ("weights NaN", tensors(M, lambda t: first_float(t, NAN)), M),
    ("weights inf", tensors(M, lambda t: first_float(t, INF)), M),
    ("weights a tensor missing", tensors(M, lambda t: t.pop(first_key(t))), M),
    ("weights an extra tensor", tensors(M, lambda t: t.update(extra=torch.zeros(2))), M),
    ("weights a tensor reshaped", tensors(M, set_tensor(None, lambda v: torch.zeros(3, 5))), M),
    ("weights float64", tensors(M, all_double), M),
    ("model.json not JSON", replace(MJ, b'{"n_items": 4'), MJ),
    ("model.json a list", replace(MJ, b"[1, 2]"), MJ),
    ("model.json user_spec removed", json_edit(MJ, lambda m: m.pop("user_spec")), MJ),
    ("model.json n_items a word", json_edit(MJ, lambda m: m.update(n_items="forty")), MJ),
    ("model.json n_items changed", json_edit(MJ, lambda m: m.update(n_items=47)), MJ),
    ("model.json label_stats pairs", json_edit(MJ, lambda m: m.update(label_stats={"r": [1]})), MJ),
    ("model.json vocabulary grown", json_edit(MJ, lambda m: m["item_spec"].update(n_ids=99)), M),
    ("model.json spec not a dict", json_edit(MJ, lambda m: m.update(item_spec=[1])), MJ),
    ("config.toml not TOML", replace(CT, b"[model\ndim = "), CT),
    ("config.toml invalid value", text_edit(CT, "dim = 16", "dim = -16"), CT),
    ("config.toml dim changed", text_edit(CT, "dim = 16", "dim = 24"), M),
    ("config.toml architecture changed", text_edit(CT, 'name = "mmoe"', 'name = "ple"'), M),
    ("config.toml text model pickled", unsafe_text_model("bin"), "pytorch_model.bin"),
    ("config.toml text model custom code", unsafe_text_model("modules"), "modules.json"),
    ("users table missing", delete(FU), FU),
    ("items table truncated", truncate(FI), FI),
    ("users and items tables swapped", swap(FU, FI), FU),
    ("users table NaN numbers", tensors(FU, set_tensor("numeric", lambda v: v * NAN)), FU),
    ("items table out of vocabulary", tensors(FI, set_tensor("ids", lambda v: v + 1000)), FI),
    ("users table ids float", tensors(FU, set_tensor("ids", lambda v: v.float())), FU),
    ("features.json not JSON", replace(FJ, b"{"), FJ),
    ("features.json of another format", json_edit(FJ, lambda d: d.update(format="x/9")), FJ),
    ("features.json user encoder removed", json_edit(FJ, lambda d: d.pop("user")), FJ),
    ("features.json a list", replace(FJ, b"[]"), FJ),
    ("ids.json missing", delete(IDS), IDS),
    ("ids.json duplicate item ids", json_edit(IDS, lambda d: d.update(items=[1] * 40)), IDS),
    ("ids.json one item fewer", json_edit(IDS, lambda d: d["items"].pop()), "ids.json"),
    ("ids.json users a dict", json_edit(IDS, lambda d: d.update(users={"a": 1})), IDS),
    ("items.parquet truncated", truncate(IT), IT),
    ("interactions.parquet 0 bytes", replace(IN, b""), IN),
    (
        "interactions.parquet column dropped",
        parquet_edit(IN, lambda df: df.drop(columns="order")),
        IN,
    ),
    (
        "interactions.parquet item out of range",
        parquet_edit(IN, lambda df: df.assign(item_idx=999)),
        IN,
    ),
    ("index vectors truncated", truncate(IV), IV),
    ("index vectors pickled", pickled(IV), IV),
    ("index vectors NaN", tensors(IV, lambda t: first_float(t, NAN)), IV),
    ("index vectors narrowed", tensors(IV, set_tensor("vectors", lambda v: v[:, :3])), IV),
    ("index.json not JSON", replace(IJ, b"{"), IJ),
    ("index.json unknown kind", json_edit(IJ, lambda d: d.update(kind="evil")), IJ),
    ("index source.json not JSON", replace(IS, b"nope"), IS),
]


@pytest.mark.parametrize(("case", "tamper", "named"), CASES, ids=[c[0] for c in CASES])
def test_tampered_run_is_a_clear_error(
    trained: Path, tmp_path: Path, case: str, tamper: Tamper, named: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    tamper(run)
    with pytest.raises((RunError, DataError)) as e:
        use(run)
    assert named in str(e.value), f"{case}: {e.value}"


def test_the_untampered_copy_loads(trained: Path, tmp_path: Path) -> None:
    """The cases fail for their tampering, not for the copy or the use."""
    shutil.copytree(trained, tmp_path / "run")
    use(tmp_path / "run")

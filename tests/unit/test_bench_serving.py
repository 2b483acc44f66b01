"""The serving benchmark's bound columns, by hand (``benchmarks/bench_serving.py``)."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_serving.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_serving", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_serving"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_serving", None)


def test_ceiling_and_floor_by_hand(bench: ModuleType) -> None:
    # 1,000 requests in 1 s; 0.9 s of server CPU + 0.1 s of client CPU: 1 ms per request. Two
    # cores, 10 % stolen: 1.8 core-seconds per second -> 1,800 requests/s at most; at
    # concurrency 16, Little's law: mean latency >= 16 / 1,800 s = 8.89 ms.
    ld = bench.Load("exact", "/recommend", 16, 1.0, [5.0] * 1000, 0, 0.9, 0.1, cores=2, steal=0.1)
    assert ld.ceiling == pytest.approx(1800.0)
    assert ld.floor_ms == pytest.approx(8.888889)
    row = bench.table([ld], {}).splitlines()[2]
    assert row.endswith("| 10 | 1800 | 8.9 |")


def test_unknown_steal_counts_every_core(bench: ModuleType) -> None:
    ld = bench.Load("exact", "/recommend", 4, 1.0, [1.0] * 500, 0, 0.4, 0.1, cores=2)
    assert math.isnan(ld.steal)
    assert ld.ceiling == pytest.approx(2000.0)  # 1 ms per request over 2 whole cores
    assert ld.floor_ms == pytest.approx(2.0)

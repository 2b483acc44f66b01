"""The Python example of docs/online.md runs as shown (on the tiny run instead of runs/ml100k)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "online.md"


def test_the_python_example_runs(tiny_run: Path, tmp_path: Path) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 1
    code = blocks[0].replace("runs/ml100k", str(tiny_run))
    code = code.replace("runs/events.db", str(tmp_path / "events.db"))
    code = code.replace('"item_id": 50', '"item_id": 5')  # the tiny run has 40 items
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})
    assert printed.getvalue().splitlines() == [
        "{'received': 1, 'stored': 1, 'duplicates': 0}",
        "{'used': 1, 'not_in_catalogue': 0, 'available': True}",
    ]

"""Where a benchmark's figures came from: the commit they were measured at."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str:
    """``git describe --always --dirty`` of the benchmarks' repository, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()

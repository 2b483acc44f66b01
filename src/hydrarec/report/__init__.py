"""Reports with plots (issue 6): ``write_report(run, fmt)`` writes ``RUN/report.html`` (or
``report.md``) and the PNGs in ``RUN/plots/``. matplotlib and scikit-learn come with the
``report`` extra."""

from __future__ import annotations

from pathlib import Path

from hydrarec.errors import ConfigError, HydrarecError

FORMATS = ("html", "md")


class ReportUnavailable(HydrarecError):
    """The plotting dependencies (the ``report`` extra) are not installed."""


def write_report(run_dir: str | Path, fmt: str = "html") -> Path:
    """Write the run's report in ``fmt`` (``html`` or ``md``); returns its path."""
    if fmt not in FORMATS:
        raise ConfigError(f"report format must be one of {FORMATS}, not {fmt!r}")
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        raise ReportUnavailable(
            f"the report needs matplotlib and scikit-learn ({e}): pip install 'hydrarec[report]'"
        ) from None
    if fmt == "md":
        from hydrarec.report.markdown import write_markdown

        return write_markdown(run_dir)
    from hydrarec.report.html import write_report as write_html

    return write_html(run_dir)


__all__ = ["FORMATS", "ReportUnavailable", "write_report"]

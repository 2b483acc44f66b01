"""``hydrarec init``: a config that trains, written from the user's own files (issue 22).

``columns.py`` guesses each column's role and kind from its name and a sample; ``data.py`` reads
the inputs and counts; ``writer.py`` chooses tasks, split and model and writes the commented TOML.
"""

from hydrarec.scaffold.writer import Scaffold, scaffold, write_scaffold

__all__ = ["Scaffold", "scaffold", "write_scaffold"]

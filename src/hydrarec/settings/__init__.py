"""What the typed configuration (``hydrarec.config``) is read and changed with, knowing none of
its fields: ``--set`` overrides (``overrides.py``)."""

"""Generated at install time from ``proto/benchd/v1/*.proto`` (see ``setup.py``)."""

"""The upstream client suite (a package, so its conftest never shadows tests/conftest.py)."""

"""NemoRouter: one key, one bill, every model."""

from pathlib import Path

from nemorouter import _native

__version__ = "0.1.0"

_native.install(Path(__file__).resolve().parent)

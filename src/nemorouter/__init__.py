"""NemoRouter: one key, one bill, every model."""

__version__ = "0.1.0"

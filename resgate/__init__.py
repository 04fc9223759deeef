"""resgate: priority-aware resource reservation engine."""

# A constant, so `resgate version` needs no importlib.metadata.
__version__ = "0.1.0"

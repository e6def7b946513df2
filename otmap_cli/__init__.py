"""otmap: optimal transport and flows from the command line."""

__version__ = "0.1.0"

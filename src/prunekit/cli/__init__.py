"""Command-line interface (``prunekit``)."""

"""``python -m prunekit`` is the ``prunekit`` command."""

from prunekit.cli.app import main

main()

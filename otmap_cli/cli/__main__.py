"""``python -m otmap_cli.cli``: the ``otmap`` command."""

from otmap_cli.cli import main

main()

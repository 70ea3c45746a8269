"""``python -m nerve``: the CLI."""

from nerve.cli import main

main()

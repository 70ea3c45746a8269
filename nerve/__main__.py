"""``python -m nerve``: the CLI."""

from nerve.cli import main

if __name__ == "__main__":
    main()

"""Runnable example apps (``python examples/NAME.py``, or ``nerve serve examples.NAME:bus``)."""

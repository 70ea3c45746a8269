"""The HTTP app: events and verified webhooks in, 202 at once, agents at work after.

Example:
    ```python
    from nerve import EventBus
    from nerve.http import create_app

    bus = EventBus("sqlite:///nerve.db")
    app = create_app(bus)
    ```
"""

from __future__ import annotations

from nerve.http.app import create_app, intake_first, router
from nerve.http.problems import HTTPProblem
from nerve.http.settings import HTTPSettings

__all__ = ["HTTPProblem", "HTTPSettings", "create_app", "intake_first", "router"]

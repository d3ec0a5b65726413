"""examples/starlette_app.py served for real: a transaction per request, rolled back on errors."""

import signal

from .accounts_api import AccountsApiTests


class TestStarletteApp(AccountsApiTests):
    script = "starlette_app.py"
    # uvicorn shuts down gracefully, then (from 0.29 on) ends with the signal it was stopped by.
    stopped_codes = frozenset({0, -signal.SIGTERM})

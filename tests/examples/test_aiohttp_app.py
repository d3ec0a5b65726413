"""examples/aiohttp_app.py served for real: a transaction per request, rolled back on errors."""

from .accounts_api import AccountsApiTests


class TestAiohttpApp(AccountsApiTests):
    script = "aiohttp_app.py"

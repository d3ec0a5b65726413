"""Where the servers are: the same settings as the tests (see ``tests/servers.py``).

``tests.json`` at the repository root (see ``tests.json.sample``), then the
environment (``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_USER``,
``POSTGRES_PASSWORD``, ``POSTGRES_DB`` and the same with ``MYSQL_``). The
benchmark makes tables of its own there (``bench_item_<pid>``, ``bench_stream_<pid>``,
``bench_user_<pid>``, ``bench_relationship_<pid>``, ``bench_message_<pid>``) and drops
them when it is done.
"""

from tests.servers import ROOT, server_settings

__all__ = ["ROOT", "server_settings"]

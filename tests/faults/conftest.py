"""Fixtures of the fault-injection tests (defined in :mod:`tests.faults.proxy`)."""

from .proxy import faulty, observer, proxy  # noqa: F401

"""Fixtures of the fault-injection tests (defined in :mod:`tests.faults.proxy`)."""

from .proxy import faulty, proxy  # noqa: F401

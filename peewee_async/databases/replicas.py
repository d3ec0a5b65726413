"""The read replicas of one primary database: which takes the next read, and which are down.

A database given ``replicas=[...]`` sends each read made outside a
transaction and outside :meth:`~peewee_async.AsyncDatabase.reads_on_primary`
to one of its replicas, in turn (:meth:`AsyncDatabase._connection
<peewee_async.databases.base.AsyncDatabase._connection>` asks :meth:`ReplicaSet.pick`).
A replica that cannot be reached is skipped for ``retry_after`` seconds, with
one log line; then one read tries it again. When every replica is skipped,
reads go to the primary, so no read fails because a replica is gone.

A read cut off on a replica that went down is run again elsewhere: a replica
runs nothing but reads, so running one twice changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import peewee

from ..errors import ConnectionLost

if TYPE_CHECKING:
    from .base import AsyncDatabase

logger = logging.getLogger("peewee.async")

#: Seconds a replica that could not be reached is skipped before a read tries it again.
DEFAULT_RETRY_AFTER = 5.0

#: What the retry of a read cut off on a replica catches: the errors a server going away raises.
UNREACHABLE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def mark_unreachable(error: BaseException) -> BaseException:
    """Note on ``error`` that it came from opening a connection: the server could not be reached."""
    error.server_unreachable = True  # type: ignore[attr-defined]
    return error


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the server is gone (rather than the statement being wrong)."""
    return isinstance(error, ConnectionLost) or getattr(error, "server_unreachable", False)


class ReplicaSet:
    """The replicas of one primary, taken in turn, skipping those found down."""

    def __init__(self, replicas: Sequence[AsyncDatabase], retry_after: float) -> None:
        self.members: tuple[AsyncDatabase, ...] = tuple(replicas)
        self.retry_after = retry_after
        self._next = 0
        # Replica -> [since when it is down, when a read may try it again];
        # only replicas found down are here.
        self.down: dict[AsyncDatabase, list[float]] = {}

    def pick(self) -> AsyncDatabase | None:
        """The replica for the next read, or ``None`` when every one is down (read on the primary)."""
        members = self.members
        count = len(members)
        start = self._next
        for offset in range(count):
            replica = members[(start + offset) % count]
            if self.down:
                entry = self.down.get(replica)
                if entry is not None:
                    now = time.monotonic()
                    if now < entry[1]:
                        continue
                    # This read tries it again; the others meanwhile keep skipping it.
                    entry[1] = now + self.retry_after
            self._next = (start + offset + 1) % count
            return replica
        return None

    def failed(self, replica: AsyncDatabase, error: BaseException) -> None:
        """``replica`` could not be reached: skip it for ``retry_after`` seconds."""
        now = time.monotonic()
        entry = self.down.get(replica)
        if entry is None:
            logger.warning(
                "Reads skip the replica %s for %ss: %s",
                replica.describe(),
                self.retry_after,
                _first_line(error),
            )
            self.down[replica] = [now, now + self.retry_after]
        else:
            logger.debug("The replica %s is still unreachable: %s", replica.describe(), _first_line(error))
            entry[1] = now + self.retry_after

    def answered(self, replica: AsyncDatabase, started: float) -> None:
        """``replica`` ran a read that began at ``started``: if it was down before that, it is back.

        A read that began before the replica was found down proves nothing:
        it may have been answered just before the replica went.
        """
        entry = self.down.get(replica)
        if entry is not None and started >= entry[0]:
            del self.down[replica]
            logger.info("The replica %s answers again and takes reads", replica.describe())


def check_replicas(primary: AsyncDatabase, replicas: Any) -> None:
    """Raise ``TypeError`` for replicas that cannot serve ``primary``'s reads."""
    from .base import AsyncDatabase

    name = type(primary).__name__
    if isinstance(replicas, AsyncDatabase) or not isinstance(replicas, Sequence):
        raise TypeError(
            f"{name}(replicas=...) takes a list of database objects, got {replicas!r}: "
            "write replicas=[replica] for one."
        )
    if primary.family == "sqlite":
        raise TypeError(
            f"{name} takes no replicas: SQLite has no replication. replicas= is for the "
            "PostgreSQL and MySQL classes."
        )
    for replica in replicas:
        if not isinstance(replica, AsyncDatabase):
            raise TypeError(
                f"A replica of {name} must be a peewee_async database object such as "
                f"{name}('app', host='replica-1'), got {replica!r}."
            )
        if replica is primary:
            raise TypeError(f"{primary.describe()} cannot be a replica of itself.")
        if replica.driver.name != primary.driver.name:
            raise TypeError(
                f"The replicas of {name} must run on {primary.driver.name} too, as it does: "
                f"{replica.describe()} runs on {replica.driver.name}. Use the class of the primary "
                "(pooled or not) for its replicas."
            )
        if replica.replicas:
            raise TypeError(
                f"The replica {replica.describe()} has replicas of its own; give every replica "
                "to the primary instead."
            )


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]

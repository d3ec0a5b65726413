"""Which values peewee's field conversions return as they are, for fast paths that skip the call.

peewee converts each value through a field: ``db_value`` on the way to the
driver, ``python_value`` on the way back. For its common field classes both
come down to ``adapt()``, which returns a value of one exact type unchanged
(``IntegerField`` an ``int``, ``CharField`` a ``str``...). A fast path that
knows a value is of that type may bind or keep the value itself, the very
object peewee's call would have returned, and skip the call.
"""

from __future__ import annotations

import datetime
from typing import Any

import peewee

_Field = peewee.Field

#: peewee's adapt() of these field classes returns a value of this exact type as it is.
UNCHANGED: dict[Any, type] = {
    peewee.IntegerField.adapt: int,
    peewee.FloatField.adapt: float,
    peewee._StringField.adapt: str,
    peewee.DateTimeField.adapt: datetime.datetime,
    peewee.DateField.adapt: datetime.date,
    peewee.TimeField.adapt: datetime.time,
    peewee.BooleanField.adapt: bool,
}


def unchanged_type(converter: Any) -> type | None:
    """The type of value ``converter`` returns as it is, or ``None``.

    ``converter`` is a field's bound ``db_value`` or ``python_value``; only
    peewee's own (``None`` stays ``None``, anything else goes to ``adapt()``)
    on a field class whose ``adapt()`` is in :data:`UNCHANGED` has one.
    """
    field = getattr(converter, "__self__", None)
    function = getattr(converter, "__func__", None)
    if not isinstance(field, _Field) or function not in (_Field.db_value, _Field.python_value):
        return None
    return UNCHANGED.get(type(field).adapt)

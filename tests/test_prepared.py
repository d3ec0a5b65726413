"""Prepared queries (``objects.prepare``) give exactly what the Manager gives for the query built each time.

Verification is on (``compiler.VERIFY``) unless a test says otherwise: every
statement bound from a prepared plan is compared with peewee's compile of the
query the function builds for that call, and every row with peewee's own.
Results are compared with sync peewee's. Then: which functions are prepared
and which are built at each call (an argument that decides the SQL), that a
prepared call does not build its query, and what changes make a plan anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee
import pytest
from peewee import JOIN, SQL, Case, fn

import peewee_async
from peewee_async import compiler
from peewee_async.prepared import PreparedQuery

from .test_statement_cache import PARAM, SELECTS, Author, Post, _ids, data, graph, sync

__all__ = ["data"]  # the fixture of test_statement_cache, used by every test here

pytestmark = pytest.mark.usefixtures("data")


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "VERIFY", True)


def prepared(query: PreparedQuery[Any]) -> bool:
    """Whether a call of ``query`` has been bound into a plan (not built each time)."""
    plans = list(query._plans.values())
    return bool(plans) and all(plan is not None for plan in plans)


def rows_of(objects: peewee_async.Manager, query: Any) -> list[Any]:
    return [graph(row) for row in sync(objects, lambda: list(query.clone()))]


#: The selects of the statement cache's tests, but the one whose function reads the fixture's instances.
PLAIN_SELECTS = [case for case in SELECTS if case[0] != "model instance compared"]
#: Those whose function only binds its argument (or ignores it); the others compute with it
#: (``k % 3``, ``f"a{k}"``, ``range(k)``, ``paginate(k, ...)``) and are built at each call.
PREPARED_SELECTS = {
    "where eq", "IN empty", "NOT IN", "IS NULL", "== None", "!= None", "startswith", "NOT",
    "arithmetic", "fn and alias", "GROUP BY HAVING", "CAST", "DISTINCT", "EXISTS subquery",
    "CTE", "window", "join models", "join dicts", "join tuples", "join namedtuples",
    "join objects", "join objects, a name twice", "left outer join with None", "aliased join",
    "switch", "join_from", "backref join", "model with an expression", "join with an expression",
    "value named as a method", "value named as a foreign key's id", "value named as a field",
}  # fmt: skip


@pytest.mark.parametrize(("name", "build"), PLAIN_SELECTS, ids=_ids(PLAIN_SELECTS))
async def test_every_select_gives_peewees_rows(
    objects: peewee_async.Manager, verify: None, name: str, build: Callable[[int], Any]
) -> None:
    """Every select of the statement cache's tests, prepared: the rows of peewee for each argument,
    whether the function was prepared or is built at each call."""
    query = objects.prepare(build)
    for k in (1, 2, 1, 3):
        rows = await query.execute(k)
        assert [graph(row) for row in rows] == rows_of(objects, build(k)), (name, k)
    assert prepared(query) is (name in PREPARED_SELECTS)


# Functions whose arguments are only bound: each must be prepared.
BOUND: list[tuple[str, Callable[..., Any], list[tuple[Any, ...]]]] = [
    ("where eq", lambda k: Author.select().where(Author.id == k), [(1,), (2,), (99,)]),
    (
        "two arguments, one used twice",
        lambda low, name: (
            Author.select().where((Author.age > low) & ((Author.name == name) | (Author.name != name)))
        ).order_by(Author.id),
        [(20, "a1"), (22, "a2")],
    ),
    (
        "join of two models",
        lambda k: (
            Post.select(Post, Author).join(Author).where(Post.id <= k).order_by(Post.id.desc()).limit(3)
        ),
        [(4,), (9,)],
    ),
    (
        "LEFT OUTER join, None for the missing",
        lambda k: (
            Post.select(Post, Author)
            .join(Author, JOIN.LEFT_OUTER, on=(Post.editor == Author.id))
            .where(Post.score >= k)
            .order_by(Post.id)
        ),
        [(0,), (5,)],
    ),
    (
        "dicts, tuples, namedtuples",
        lambda k: Author.select(Author.name, Author.age).where(Author.id >= k).order_by(Author.id).dicts(),
        [(2,), (4,)],
    ),
    (
        "tuples",
        lambda k: Post.select(Post.title).where(Post.score < k).order_by(Post.id).tuples(),
        [(3,), (7,)],
    ),
    (
        "namedtuples",
        lambda k: Post.select(Post.id, Post.title).where(Post.score > k).order_by(Post.id).namedtuples(),
        [(3,), (7,)],
    ),
    (
        "LIKE of a pattern",
        lambda p: Author.select().where(Author.name**p).order_by(Author.id),
        [("a%",), ("%3",)],
    ),
    (
        "subquery with the argument",
        lambda k: (
            Post.select()
            .where(Post.author.in_(Author.select(Author.id).where(Author.age > k)))
            .order_by(Post.id)
        ),
        [(21,), (23,)],
    ),
    (
        "SQL() with the argument as its parameter",
        lambda k: Author.select().where(SQL(f"age > {PARAM[0]}", [k])).order_by(Author.id),
        [(21,), (23,)],
    ),
    (
        "CASE on the argument",
        lambda k: (
            Author.select(Author.id, Case(None, ((Author.age > k, "old"),), "young").alias("c"))
            .order_by(Author.id)
            .dicts()
        ),
        [(21,), (23,)],
    ),
    (
        "keyword arguments",
        lambda *, low, high: Author.select().where(Author.age.between(low, high)).order_by(Author.id),
        [],  # called with keywords below
    ),
]


@pytest.mark.parametrize(("name", "build", "calls"), BOUND, ids=[case[0] for case in BOUND])
async def test_bound_arguments_are_prepared(
    objects: peewee_async.Manager,
    verify: None,
    name: str,
    build: Callable[..., Any],
    calls: list[tuple[Any, ...]],
) -> None:
    query = objects.prepare(build)
    if not calls:
        for low, high in ((20, 22), (22, 25)):
            rows = await query.execute(low=low, high=high)
            assert [graph(row) for row in rows] == rows_of(objects, build(low=low, high=high))
    for args in [*calls, *calls]:
        rows = await query.execute(*args)
        assert [graph(row) for row in rows] == rows_of(objects, build(*args)), (name, args)
    assert prepared(query), name


#: An ordering looked up by the argument's value: the placeholder finds none.
ORDERS = {1: Author.name.desc(), 2: Author.age.desc()}


def _between(low: Any, high: Any) -> Any:
    """The arguments in the other order when they are not ints: the placeholders' leaves are swapped."""
    if not isinstance(low, int):
        low, high = high, low
    return Author.select().where((Author.age >= low) & (Author.age <= high)).order_by(Author.id)


# Functions whose arguments decide the SQL: built at each call, as the Manager would run them.
BUILT: list[tuple[str, Callable[..., Any], list[Any]]] = [
    (
        "a look-up by the argument's value",
        lambda k: Author.select().where(Author.id > k).order_by(ORDERS.get(k, Author.id)),
        [1, 2],
    ),
    ("arguments placed by their type", _between, [(21, 23), (20, 25)]),
    (
        "an IN list's length",
        lambda ids: Author.select().where(Author.id.in_(ids)).order_by(Author.id),
        [[1], [1, 2, 3], []],
    ),
    ("a LIMIT", lambda n: Author.select().order_by(Author.id).limit(n), [1, 3]),
    ("arithmetic on it", lambda k: Author.select().where(Author.id == k + 1), [1, 2]),
    ("text made of it", lambda k: Author.select().where(Author.name == f"a{k}"), [1, 2]),
    ("a Python if", lambda k: Author.select().where(Author.id == 1 if k else Author.id == 2), [0, 1]),
    (
        "peewee's LIKE wrapping",
        lambda p: Author.select().where(Author.name.contains(p)).order_by(Author.id),
        ["a", "3"],
    ),
]


@pytest.mark.parametrize(("name", "build", "values"), BUILT, ids=[case[0] for case in BUILT])
async def test_arguments_that_decide_the_sql_are_built_each_call(
    objects: peewee_async.Manager, verify: None, name: str, build: Callable[..., Any], values: list[Any]
) -> None:
    query = objects.prepare(build)
    for value in [*values, *values]:
        args = value if isinstance(value, tuple) else (value,)  # a tuple: the arguments
        rows = await query.execute(*args)
        assert [graph(row) for row in rows] == rows_of(objects, build(*args)), (name, value)
    assert not prepared(query), name


async def test_none_is_told_apart_by_its_type(objects: peewee_async.Manager, verify: None) -> None:
    """``== None`` is IS NULL, which binds nothing: calls with None are built each time, calls with
    an int keep their plan, each exact."""
    query = objects.prepare(lambda age: Author.select().where(Author.age == age).order_by(Author.id))
    for age in (None, 21, None, 22):
        rows = await query.execute(age)
        assert [graph(row) for row in rows] == rows_of(objects, Author.select().where(Author.age == age))
    assert query._plans[None, (type(None),)] is None
    assert query._plans[None, (int,)] is not None


async def test_a_value_the_function_computes_is_not_frozen(
    objects: peewee_async.Manager, verify: None
) -> None:
    """A value of the function's own that differs between its calls: never prepared, read at each call."""
    counter = iter(range(100))
    query = objects.prepare(lambda: Author.select().where(Author.id > next(counter)).order_by(Author.id))
    firsts = [(await query.execute())[0].id for _ in range(3)]
    assert firsts[0] < firsts[1] < firsts[2]
    assert not prepared(query)


async def test_a_prepared_call_does_not_build_its_query(
    objects: peewee_async.Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prepared, a call runs no line of the function: the function is called twice when a new kind
    of arguments comes (with them, then with placeholders), and never again (verification, which
    builds each call's query to compare, off)."""
    monkeypatch.setattr(compiler, "VERIFY", False)
    calls: list[Any] = []

    def build(k: int) -> Any:
        calls.append(k)
        return Post.select(Post, Author).join(Author).where(Post.score >= k).order_by(Post.id)

    query = objects.prepare(build)
    first = await query.execute(3)
    assert len(calls) == 2
    for k in (4, 5, 6):
        rows = await query.execute(k)
        assert [graph(row) for row in rows] == rows_of(objects, build(k))
    assert len(calls) == 2 + 3  # only the rows_of() calls above
    assert [graph(row) for row in first] == rows_of(objects, build(3))
    await query.execute("3")  # another type: read again
    assert len(calls) == 2 + 4 + 2


async def test_get_count_exists_scalar(objects: peewee_async.Manager, verify: None) -> None:
    """Each method answers as the Manager's method of its name for the query built of the same arguments."""
    by_name = objects.prepare(lambda name: Author.select().where(Author.name == name))
    older = objects.prepare(lambda age: Author.select().where(Author.age > age))
    oldest = objects.prepare(lambda k: Author.select(fn.MAX(Author.age)).where(Author.id > k))
    for k in (1, 2, 4):
        author = await by_name.get(f"a{k}")
        assert graph(author) == graph(await objects.get(Author.select().where(Author.name == f"a{k}")))
        assert await by_name.get_or_none("nobody") is None
        with pytest.raises(Author.DoesNotExist, match="instance matching query does not exist"):
            await by_name.get("nobody")
        assert await older.count(20 + k) == sync(objects, Author.select().where(Author.age > 20 + k).count)
        assert await older.exists(20 + k) is sync(objects, Author.select().where(Author.age > 20 + k).exists)
        assert await older.exists(99) is False
        scalar = Author.select(fn.MAX(Author.age)).where(Author.id > k)
        assert await oldest.scalar(k) == sync(objects, scalar.scalar)
    for query in (by_name, older, oldest):
        assert prepared(query)


async def test_updates_and_deletes(objects: peewee_async.Manager, verify: None) -> None:
    """update by expression and delete, prepared: row counts and rows changed as peewee changes them."""
    bump = objects.prepare(lambda by, author: Post.update(score=Post.score + by).where(Post.author == author))
    drop = objects.prepare(lambda above: Post.delete().where(Post.score > above))
    for author in (1, 2, 1):
        expected = sync(objects, Post.select().where(Post.author == author).count)
        assert await bump.execute(3, author) == expected
    assert prepared(bump)
    scores = [post.score for post in await objects.execute(Post.select().order_by(Post.id))]
    assert scores == [post.score for post in sync(objects, lambda: list(Post.select().order_by(Post.id)))]
    above = sorted(scores)[-3]
    assert await drop.execute(above) == 2
    assert await drop.execute(above) == 0
    assert prepared(drop)


async def test_inside_a_transaction(objects: peewee_async.Manager, db: Any) -> None:
    """A prepared query runs on the task's transaction: it sees its uncommitted rows."""
    named = objects.prepare(lambda name: Author.select().where(Author.name == name))
    assert await named.count("new") == 0
    try:
        async with objects.atomic():
            await objects.create(Author, name="new", age=1)
            assert await named.count("new") == 1
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert await named.count("new") == 0
    assert prepared(named)


async def test_a_changed_table_makes_a_new_plan(objects: peewee_async.Manager, db: Any) -> None:
    """A model's new table name (or any change of its fields, key, schema or database) reads the function
    again: the SQL names the table as it is now."""
    query = objects.prepare(lambda k: Author.select().where(Author.id == k))
    await query.execute(1)
    (plan,) = query._plans.values()
    Author._meta.set_table_name("author_renamed")
    try:
        assert not plan.fresh(db)
        with pytest.raises(peewee.DatabaseError):  # no such table: the new name was sent
            await query.execute(1)
    finally:
        Author._meta.set_table_name("author")
    assert len(await query.execute(1)) == 1
    assert query._plans[None, (int,)] is not plan


async def test_verification_catches_a_value_frozen_by_preparing(
    objects: peewee_async.Manager, verify: None
) -> None:
    """A value the function reads from elsewhere, the same twice when it was prepared and changed later,
    is what the docs warn of: verification mode finds it."""
    setting = {"age": 20}
    query = objects.prepare(lambda k: Author.select().where((Author.age > setting["age"]) & (Author.id > k)))
    await query.execute(0)
    setting["age"] = 22
    with pytest.raises(compiler.VerificationError, match="differs from peewee"):
        await query.execute(0)


async def _selects(k: int) -> Any:
    return Author.select().where(Author.id == k)


async def test_bad_use(objects: peewee_async.Manager) -> None:
    with pytest.raises(TypeError, match="function building a query"):
        objects.prepare(Author.select())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="define it with `def`"):
        objects.prepare(_selects)
    returning_a_coroutine = objects.prepare(lambda k: _selects(k))
    with pytest.raises(TypeError, match="not a peewee query"):
        await returning_a_coroutine.execute(1)  # closed: no "never awaited" warning, an error here
    with pytest.raises(TypeError, match="not a peewee query"):
        await objects.prepare(lambda k: [k]).execute(1)
    failing = objects.prepare(lambda k: Author.select().where(Author.nonexistent == k))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        await failing.execute(1)
    with pytest.raises(TypeError):
        await objects.prepare(lambda k: Author.select()).execute()  # type: ignore[call-arg]


async def test_a_locking_select(objects: peewee_async.Manager, verify: None) -> None:
    """A select ``for_update()``, prepared, inside a transaction: the Manager's rows, or its error
    where the database has no FOR UPDATE."""
    locked = objects.prepare(lambda k: Author.select().where(Author.id <= k).order_by(Author.id).for_update())
    async with objects.atomic():
        for k in (2, 3, 2):
            try:
                expected: Any = [graph(row) for row in await objects.execute(locked.query(k))]
            except Exception as exc:
                with pytest.raises(type(exc)):
                    await locked.execute(k)
                continue
            assert [graph(row) for row in await locked.execute(k)] == expected

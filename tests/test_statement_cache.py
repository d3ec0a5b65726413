"""The statement cache of query shapes and the rows built for them give exactly what peewee gives.

Every query here runs with verification on (``compiler.VERIFY``): each
statement served from the cache is compiled by peewee too and compared, SQL
and parameters, and each row built by our row plans is compared with the row
of peewee's own cursor wrapper, so a difference fails the test. Each query
runs twice with other values, the second time from the cache, and its result
is compared with sync peewee's. Then what the cache must not reuse: a query
of another shape, a value peewee writes as SQL, nodes it does not know, a
model whose table changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee
import pytest
from peewee import JOIN, SQL, Case, fn

import peewee_async
from peewee_async import compiler, execution, query_keys

from .conftest import BACKENDS


class Author(peewee.Model):
    name = peewee.CharField(max_length=40)
    age = peewee.IntegerField(null=True)


class Post(peewee.Model):
    author = peewee.ForeignKeyField(Author, backref="posts")
    title = peewee.CharField(max_length=40)
    score = peewee.IntegerField(default=0)
    editor = peewee.ForeignKeyField(Author, null=True, backref="edited")


class LowerSQLField(peewee.CharField):
    """A db_value that is SQL: peewee writes LOWER(%s) for each value."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else fn.LOWER(value)


class Tagged(peewee.Model):
    tag = LowerSQLField(max_length=20)


class Shouting(peewee.CharField):
    """A python_value of its own: values read back in upper case."""

    def python_value(self, value: Any) -> Any:
        return None if value is None else value.upper()


class Code(peewee.Model):
    code = Shouting(max_length=10, primary_key=True)


class Coded(peewee.Model):
    code = peewee.ForeignKeyField(Code, backref="coded")
    label = peewee.CharField(max_length=10)


def family(backend: str) -> str:
    return BACKENDS[backend][0]


#: The parameter mark of the backend under test, for SQL() text with parameters.
PARAM = ["%s"]


@pytest.fixture
async def data(objects: peewee_async.Manager, db: Any, bind_models: Any) -> dict[str, Any]:
    PARAM[0] = db.param
    bind_models(Author, Post, Tagged)
    authors = [await objects.create(Author, name=f"a{i}", age=None if i == 3 else 20 + i) for i in range(6)]
    for i in range(12):
        await objects.create(
            Post, author=authors[i % 5], title=f"t{i}", score=i, editor=authors[0] if i % 4 == 0 else None
        )
    await objects.create(Tagged, tag="abc")
    return {"authors": authors}


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "VERIFY", True)


def sync(objects: peewee_async.Manager, call: Callable[[], Any]) -> Any:
    with objects.allow_sync():
        return call()


def graph(row: Any) -> Any:
    """A model row as plain data: its fields, the related instances and the other attributes it holds."""
    if isinstance(row, peewee.Model):
        related = {name: graph(value) for name, value in row.__rel__.items()}
        state = ("__data__", "_dirty", "__rel__")
        others = {name: graph(value) for name, value in vars(row).items() if name not in state}
        return (type(row).__name__, dict(row.__data__), related, sorted(row._dirty), others)
    if isinstance(row, tuple) and hasattr(row, "_fields"):
        return (row._fields, tuple(row))
    return row


# Each case: a name and a function of k building the query. They cover the node
# types of peewee a select, update or delete is made of.
SELECTS: list[tuple[str, Callable[[int], Any]]] = [
    ("where eq", lambda k: Author.select().where(Author.id == k)),
    (
        "where and/or, order, limit, offset",
        lambda k: (
            Author.select()
            .where((Author.age > 20 + k % 3) | (Author.name == f"a{k}"))
            .order_by(Author.name.desc())
            .limit(3)
            .offset(k % 2)
        ),
    ),
    ("IN list", lambda k: Author.select().where(Author.id.in_([k, k + 1, k + 2])).order_by(Author.id)),
    (
        "IN list of other length",
        lambda k: Author.select().where(Author.id.in_(list(range(k)))).order_by(Author.id),
    ),
    ("IN empty", lambda k: Author.select().where(Author.id.in_([]))),
    ("NOT IN", lambda k: Author.select().where(Author.id.not_in([k])).order_by(Author.id)),
    ("IS NULL", lambda k: Author.select().where(Author.age.is_null()).order_by(Author.id)),
    ("== None", lambda k: Author.select().where((Author.age == None) | (Author.id == k)).order_by(Author.id)),  # noqa: E711
    ("!= None", lambda k: Author.select().where(Author.age != None).order_by(Author.id)),  # noqa: E711
    ("LIKE escaped", lambda k: Author.select().where(Author.name.contains(f"a{k % 5}")).order_by(Author.id)),
    ("startswith", lambda k: Author.select().where(Author.name.startswith("a")).order_by(Author.id)),
    ("BETWEEN", lambda k: Author.select().where(Author.age.between(20 + k % 2, 24)).order_by(Author.id)),
    ("NOT", lambda k: Author.select().where(~(Author.id == k)).order_by(Author.id)),
    (
        "arithmetic",
        lambda k: Author.select(Author.id, (Author.age + k).alias("older")).order_by(Author.id).dicts(),
    ),
    (
        "fn and alias",
        lambda k: Author.select(fn.LOWER(Author.name).alias("low")).where(Author.id > k).dicts(),
    ),
    ("COUNT scalar", lambda k: Author.select(fn.COUNT(SQL("*"))).where(Author.age > 20 + k % 4).tuples()),
    (
        "GROUP BY HAVING",
        lambda k: (
            Post.select(Post.author, fn.SUM(Post.score).alias("total"))
            .group_by(Post.author)
            .having(fn.SUM(Post.score) > k)
            .order_by(Post.author)
            .tuples()
        ),
    ),
    (
        "CASE",
        lambda k: (
            Author.select(Author.id, Case(Author.age, ((21, "one"), (20 + k % 5, "k")), "other").alias("c"))
            .order_by(Author.id)
            .dicts()
        ),
    ),
    (
        "CASE without base",
        lambda k: (
            Author.select(Case(None, ((Author.age > 20 + k % 5, "old"),), "young").alias("c"))
            .order_by(Author.id)
            .tuples()
        ),
    ),
    (
        "SQL with params",
        lambda k: Author.select().where(SQL(f"age > {PARAM[0]}", [20 + k % 4])).order_by(Author.id),
    ),
    ("CAST", lambda k: Author.select(Author.age.cast("CHAR(8)").alias("s")).where(Author.id == k).dicts()),
    (
        "DISTINCT",
        lambda k: Post.select(Post.author).distinct().where(Post.score > k).order_by(Post.author).tuples(),
    ),
    (
        "subquery IN",
        lambda k: (
            Post.select()
            .where(Post.author.in_(Author.select(Author.id).where(Author.age > 20 + k % 4)))
            .order_by(Post.id)
        ),
    ),
    (
        "EXISTS subquery",
        lambda k: (
            Author.select()
            .where(fn.EXISTS(Post.select(SQL("1")).where((Post.author == Author.id) & (Post.score > k))))
            .order_by(Author.id)
        ),
    ),
    ("CTE", lambda k: _cte(k)),
    (
        "window",
        lambda k: (
            Post.select(
                Post.id,
                fn.ROW_NUMBER().over(partition_by=[Post.author], order_by=[Post.score.desc()]).alias("rn"),
            )
            .where(Post.score > k)
            .order_by(Post.id)
            .tuples()
        ),
    ),
    (
        "UNION",
        lambda k: (
            Author.select(Author.id).where(Author.id == k)
            | Author.select(Author.id).where(Author.id == k + 1)
        ).order_by(SQL("1")),
    ),
    (
        "UNION ALL tuples",
        lambda k: (
            Author.select(Author.name).where(Author.id <= k)
            + Author.select(Author.name).where(Author.id > k + 2)
        ).tuples(),
    ),
    (
        "ORDER BY NULLS LAST",
        lambda k: Author.select().where(Author.id > k % 2).order_by(Author.age.desc(nulls="last")),
    ),
    ("join models", lambda k: Post.select(Post, Author).join(Author).where(Post.score > k).order_by(Post.id)),
    (
        "join dicts",
        lambda k: (
            Post.select(Post.title, Author.name).join(Author).where(Post.score > k).order_by(Post.id).dicts()
        ),
    ),
    (
        "join tuples",
        lambda k: (
            Post.select(Post.id, Author.id).join(Author).where(Post.score < k).order_by(Post.id).tuples()
        ),
    ),
    (
        "join namedtuples",
        lambda k: (
            Post.select(Post.id, Author.name)
            .join(Author)
            .where(Author.id == k)
            .order_by(Post.id)
            .namedtuples()
        ),
    ),
    (
        "join objects",
        lambda k: (
            Post.select(Post.id, Author.name).join(Author).where(Post.score > k).order_by(Post.id).objects()
        ),
    ),
    (
        "join objects, a name twice",
        lambda k: (
            Post.select(Post.id, Post.title, Author.id, Author.name)
            .join(Author)
            .where(Post.score > k)
            .order_by(Post.id)
            .objects()
        ),
    ),
    ("left outer join with None", lambda k: _editors(k)),
    ("aliased join", lambda k: _aliased(k)),
    (
        "switch",
        lambda k: (
            Post.select(Post, Author).join(Author).switch(Post).where(Post.score >= k).order_by(Post.id)
        ),
    ),
    (
        "join_from",
        lambda k: (
            Post.select(Post.id, Author.name)
            .join_from(Post, Author)
            .where(Author.id > k)
            .order_by(Post.id)
            .tuples()
        ),
    ),
    (
        "backref join",
        lambda k: (
            Author.select(Author, Post).join(Post, on=Post.author).where(Post.score == k).order_by(Post.id)
        ),
    ),
    ("model instance compared", lambda k: None),  # built in the test, of the authors made
    (
        "model with an expression",
        lambda k: Author.select(Author, (Author.age + k).alias("later")).order_by(Author.id),
    ),
    ("annotated count", lambda k: _post_counts(k)),
    (
        "join with an expression",
        lambda k: (
            Post.select(Post, Author, (Post.score * k).alias("weighted"))
            .join(Author)
            .where(Post.score > k)
            .order_by(Post.id)
        ),
    ),
    (
        "value named as a method",
        lambda k: Author.select(Author.id, fn.LOWER(Author.name).alias("save")).where(Author.id > k),
    ),
    (
        "value named as a foreign key's id",
        lambda k: Post.select(Post.id, fn.ABS(Post.author).alias("author_id")).where(Post.id > k),
    ),
    (
        "value named as a field",
        lambda k: Author.select(Author.id, fn.UPPER(Author.name).alias("name")).where(Author.id > k),
    ),
    ("paginate", lambda k: Post.select().order_by(Post.id).paginate(1 + k % 3, 4)),
    ("get of a query", lambda k: Author.select().where(Author.name == f"a{k % 5}").limit(1)),
]


def _cte(k: int) -> Any:
    scores = (
        Post.select(Post.author, fn.MAX(Post.score).alias("best")).where(Post.score > k).group_by(Post.author)
    )
    cte = scores.cte("best_scores", columns=("author_id", "best"))
    return (
        Author.select(Author.name, cte.c.best)
        .join(cte, on=(Author.id == cte.c.author_id))
        .with_cte(cte)
        .order_by(Author.id)
        .tuples()
    )


def _post_counts(k: int) -> Any:
    """Authors with the number of their posts: an everyday annotated select (a LEFT OUTER join, GROUP BY)."""
    return (
        Author.select(Author, fn.COUNT(Post.id).alias("posts"))
        .join(Post, JOIN.LEFT_OUTER, on=Post.author)
        .where(Author.id > k % 2)
        .group_by(Author)
        .order_by(Author.id)
    )


def _editors(k: int) -> Any:
    editor = Author.alias("editor")
    return (
        Post.select(Post, editor)
        .join(editor, JOIN.LEFT_OUTER, on=(Post.editor == editor.id))
        .where(Post.score > k)
        .order_by(Post.id)
    )


def _aliased(k: int) -> Any:
    writer = Author.alias()
    return (
        Post.select(Post, writer)
        .join(writer, on=(Post.author == writer.id))
        .where(writer.id > k)
        .order_by(Post.id)
    )


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in cases]


@pytest.mark.parametrize(("name", "build"), SELECTS, ids=_ids(SELECTS))
async def test_select_shapes(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None, name: str, build: Callable[[int], Any]
) -> None:
    """Each select: served from the cache the second time, with peewee's SQL and rows (verified)."""
    builder = build
    if name == "model instance compared":
        built = [
            Post.select().where(Post.author == author).order_by(Post.id) for author in data["authors"][1:3]
        ]

        def builder(k: int) -> Any:
            return built[k - 1]

    for k in (1, 2):
        query = builder(k)
        rows = await objects.execute(query)
        assert [graph(row) for row in rows] == [
            graph(row) for row in sync(objects, lambda q=query: list(q.clone()))
        ]
        assert compiler.lookup(db, builder(k)) is not None, f"{name}: not served from the cache"


async def test_a_foreign_key_reads_as_the_field_it_points_to(
    objects: peewee_async.Manager, bind_models: Any, verify: None
) -> None:
    """A foreign key's value is converted by the field it points to (here a primary key with a
    python_value of its own), alone and joined, as peewee's wrappers convert it."""
    bind_models(Code, Coded)
    for code in ("ab", "cd"):
        await objects.create(Code, code=code)
        await objects.create(Coded, code=code, label=f"of {code}")
    queries = [
        lambda: Coded.select().order_by(Coded.id),
        lambda: Coded.select(Coded, Code).join(Code).order_by(Coded.id),
        lambda: Coded.select(Coded.code).order_by(Coded.id).tuples(),
        lambda: Coded.select(Coded, Code).join(Code).order_by(Coded.id).dicts(),
    ]
    for make in queries:
        for _ in (1, 2):  # the second from the cache
            rows = await objects.execute(make())
            assert [graph(row) for row in rows] == [
                graph(row) for row in sync(objects, lambda m=make: list(m()))
            ]
    first = (await objects.execute(Coded.select().order_by(Coded.id)))[0]
    assert first.__data__["code"] == "AB"


@pytest.mark.parametrize("k", [0, 3])
async def test_shortcuts_of_queries(objects: peewee_async.Manager, data: Any, verify: None, k: int) -> None:
    """get() and scalar() of a query, count() of filtered and joined queries, as sync peewee answers."""
    author = await objects.get(Author.select().where(Author.name == f"a{k}"))
    assert author.name == f"a{k}"
    assert await objects.get(Author, Author.name == f"a{k}") == author
    with pytest.raises(Author.DoesNotExist):
        await objects.get(Author.select().where(Author.name == "nobody"))
    count_queries = [
        Author.select().where(Author.age > 20 + k),
        Post.select(Post, Author).join(Author).where(Author.age >= 20 + k).order_by(Post.id),
        Post.select().where(Post.editor.is_null()),
        Post.select().join(Author, JOIN.LEFT_OUTER, on=(Post.editor == Author.id)).where(Post.score > k),
        Post.select(Post.author).distinct(),
        Post.select(Post.author, fn.COUNT(Post.id)).group_by(Post.author),
        Post.select().order_by(Post.id).limit(5).offset(k),
        Author.select().where(Author.id.in_(Post.select(Post.author).where(Post.score > k))),
    ]
    for query in count_queries:
        assert await objects.count(query) == sync(objects, query.count), query.sql()
        assert await objects.count(query, clear_limit=True) == sync(
            objects, lambda q=query: q.count(clear_limit=True)
        )
    scalar = Author.select(fn.MAX(Author.age)).where(Author.id > k)
    assert await objects.scalar(scalar) == sync(objects, scalar.scalar)


async def test_writes_by_expression(objects: peewee_async.Manager, db: Any, data: Any, verify: None) -> None:
    """update and delete by expression: served from the cache, the rows changed as peewee changes them."""
    for k in (1, 2):
        changed = await objects.execute(Post.update(score=Post.score + k).where(Post.author == k))
        assert changed == sync(objects, Post.select().where(Post.author == k).count)
        assert compiler.lookup(db, Post.update(score=Post.score + k).where(Post.author == k)) is not None
        await objects.execute(Author.update(age=None).where(Author.id == k + 2))
        assert (await objects.get(Author, id=k + 2)).age is None
    scores = [post.score for post in await objects.execute(Post.select().order_by(Post.id))]
    assert scores == [post.score for post in sync(objects, lambda: list(Post.select().order_by(Post.id)))]
    editor = data["authors"][0]
    assert await objects.execute(Post.update(editor=editor).where(Post.score > 100)) == 0
    assert await objects.execute(Post.delete().where(Post.score > 13)) == sync(
        objects, Post.select().where(Post.score > 13).count
    )
    assert await objects.execute(Post.delete().where(Post.title.in_(["t0", "t1"]))) == 2


async def test_returning(objects: peewee_async.Manager, backend: str, data: Any, verify: None) -> None:
    """RETURNING of an update (PostgreSQL): rows as peewee gives them."""
    if family(backend) != "postgres":
        pytest.skip("RETURNING of an UPDATE: PostgreSQL")
    for k in (1, 2):
        rows = await objects.execute(
            Author.update(age=Author.age + 1).where(Author.id == k).returning(Author.id, Author.age)
        )
        assert [(row.id, row.age) for row in rows] == [(k, 20 + k)]


async def test_for_update(objects: peewee_async.Manager, backend: str, data: Any, verify: None) -> None:
    """for_update() inside a transaction: the rows, locked, from the cache the second time."""
    if family(backend) == "sqlite":
        pytest.skip("SQLite has no FOR UPDATE")
    for k in (1, 2):
        async with objects.atomic():
            rows = await objects.execute(Author.select().where(Author.id == k).for_update())
            assert [row.id for row in rows] == [k]


async def test_none_and_in_lists_are_shape(db: Any, objects: peewee_async.Manager, data: Any) -> None:
    """None and the length of an IN list change the SQL: they make other keys, never a wrong reuse."""
    keys = {
        query_keys.walk(query).key
        for query in (
            Author.select().where(Author.age == 1),
            Author.select().where(Author.age == None),  # noqa: E711
            Author.select().where(Author.age.in_([1])),
            Author.select().where(Author.age.in_([1, 2])),
            Author.select().where(Author.age.in_([])),
            Author.select().where(Author.age == "1"),
        )
    }
    assert len(keys) == 6
    assert (
        query_keys.walk(Author.select().where(Author.age == 1)).key
        == query_keys.walk(Author.select().where(Author.age == 2)).key
    )


def _numbers_written_in(query: Any, db: Any) -> tuple[str, list[Any]]:
    """peewee's own SQL of ``query`` (plain ``peewee.Context``), with its LIMIT and OFFSET 0 written in."""
    sql, params = peewee.Context(**db.get_context_options()).sql(query).query()
    parts = sql.split(db.param)
    assert len(parts) == len(params) + 1
    text, kept = parts[0], []
    for value, part in zip(params, parts[1:], strict=True):
        if type(value) is int and (text.endswith(" LIMIT ") or (text.endswith(" OFFSET ") and value == 0)):
            text += str(value) + part
        else:
            text += db.param + part
            kept.append(value)
    return text, kept


def _from_limited(k: int) -> Any:
    """A select from a subquery with a LIMIT of its own."""
    limited = Author.select(Author.id).order_by(Author.id).limit(k).alias("limited")
    return Author.select(limited.c.id).from_(limited).order_by(limited.c.id).tuples()


@pytest.mark.parametrize(
    "build",
    [
        lambda k: Author.select().order_by(Author.id).limit(k),
        lambda k: Author.select().order_by(Author.id).paginate(1, k),
        lambda k: Author.select().order_by(Author.id).paginate(2, k),
        lambda k: Author.select().order_by(Author.id).offset(k),
        lambda k: Author.select().order_by(Author.id).offset(0).limit(k),
        _from_limited,
        lambda k: Author.select().order_by(Author.id).limit(str(k)),
    ],
    ids=["limit", "first-page", "second-page", "offset", "offset-0", "in-subquery", "limit-as-text"],
)
async def test_limits_written_as_numbers(
    objects: peewee_async.Manager, db: Any, backend: str, data: Any, verify: None, build: Any
) -> None:
    """A LIMIT that is an int, and an OFFSET of 0, are numbers in the SQL; other values stay parameters.

    The SQL is peewee's own (compiled with a plain ``peewee.Context``) with
    those numbers written in. Each LIMIT is a key of its own, so a statement
    cached with one number is never reused for another.
    """
    if family(backend) != "sqlite" and type(build(1)._limit) is str:
        pytest.skip("only SQLite takes text for a LIMIT")
    for k in (2, 3, 2):
        query = build(k)
        expected_sql, expected_params = _numbers_written_in(query, db)
        if db.driver.translates_sql:
            expected_sql = db.driver.driver_sql(expected_sql)
        assert compiler.compile_query(db, query) == (expected_sql, expected_params)
        rows = [graph(row) for row in await objects.execute(query)]
        assert rows == sync(objects, lambda k=k: [graph(row) for row in build(k)])


async def test_values_peewee_writes_as_sql(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """A field whose db_value is SQL: peewee compiles the query each time, the rows stay right."""
    for tag in ("ABC", "abc"):
        rows = await objects.execute(Tagged.select().where(Tagged.tag == tag))
        assert [row.tag for row in rows] == ["abc"]
        assert compiler.lookup(db, Tagged.select().where(Tagged.tag == tag)) is None


class Unusual(peewee.Expression):
    """A node class the walk does not know."""


async def test_unknown_nodes_are_compiled_by_peewee(
    objects: peewee_async.Manager, db: Any, data: Any
) -> None:
    query = Author.select().where(Unusual(Author.id, "=", 1))
    with pytest.raises(query_keys.Unkeyable):
        query_keys.walk(query)
    assert compiler.lookup(db, query) is None
    assert [author.id for author in await objects.execute(query)] == [1]
    # A raw query with a parameter that is SQL: peewee writes it after the text.
    raw = Author.raw(f"SELECT * FROM author WHERE id = {db.param}", SQL("1"))
    with pytest.raises(query_keys.Unkeyable):
        query_keys.walk(raw)


def _raw_queries(p: str) -> list[tuple[str, Callable[[int], Any]]]:
    """Raw queries of each row type, in the parameter style ``p`` of the backend."""
    return [
        ("models", lambda k: Author.raw(f"SELECT * FROM author WHERE id <= {p} ORDER BY id", k)),
        (
            "dicts",
            lambda k: Author.raw(f"SELECT name, age FROM author WHERE id > {p} ORDER BY id", k).dicts(),
        ),
        (
            "tuples, two parameters",
            lambda k: Author.raw(
                f"SELECT id, name FROM author WHERE id IN ({p}, {p}) ORDER BY id", k, k + 1
            ).tuples(),
        ),
        (
            "a None parameter",
            lambda k: Author.raw(f"SELECT id FROM author WHERE age IS NOT NULL OR name = {p}", None).tuples(),
        ),
        (
            "a percent sign in a literal",
            lambda k: Author.raw(f"SELECT id FROM author WHERE name NOT LIKE '%%z' AND id = {p}", k).tuples(),
        ),
        ("no parameter", lambda k: Author.raw("SELECT COUNT(*) FROM author").tuples()),
        (
            "models with a count",
            lambda k: Author.raw(
                "SELECT a.*, (SELECT COUNT(*) FROM post AS p WHERE p.author_id = a.id) AS posts "
                f"FROM author AS a WHERE a.id <= {p} ORDER BY a.id",
                k,
            ),
        ),
    ]


@pytest.mark.parametrize("case", range(7))
async def test_raw_queries_are_keyed(
    objects: peewee_async.Manager, db: Any, backend: str, data: Any, verify: None, case: int
) -> None:
    """``Model.raw(sql, *params)``: text and parameters as peewee sends them, rows as peewee builds them."""
    name, build = _raw_queries(db.param)[case]
    for k in (1, 3, 1):
        found = compiler.lookup(db, build(k))
        assert found is not None, name
        assert (found[0], found[1]) == compiler.peewee_compile(db, build(k)), name
        rows = [graph(row) for row in await objects.execute(build(k))]
        assert rows == sync(objects, lambda k=k: [graph(row) for row in build(k)]), name
        assert rows, name
    if name.startswith("models"):
        found = compiler.lookup(db, build(1))
        assert found is not None and found[2].rows is not None
        assert found[2].rows.build.__code__.co_filename.startswith("<peewee_async"), "rows built by peewee"


def _suffixed(suffix: str) -> Any:
    """A converter made at each call with its own default: the same code, another function."""
    return lambda value, suffix=suffix: f"{value}{suffix}"


def _ending(tail: str) -> Any:
    """A converter of a variable of the call that made it."""
    return lambda value: value + tail


def _tagging(tag: str) -> Any:
    """A constructor of a variable of the call that made it."""
    return lambda **row: (tag, row)


class _Tagger:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def convert(self, value: Any) -> Any:
        return f"{value}{self.tag}"


def _names(converter: Any) -> Any:
    return (
        Author.select(fn.LOWER(Author.name).python_value(converter).alias("n")).order_by(Author.id).tuples()
    )


async def test_functions_made_at_each_call(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """A lambda written inline in a query built at each call is a new function each time: one shape
    for all of them, where it does what the last did (same code and module, the same defaults, no
    variables of an enclosing call), else a shape of its own, and the rows of each call's own."""
    before = len(db.statement_cache)
    for _ in range(5):
        rows = await objects.execute(_names(lambda value: value.upper()))
        assert rows == sync(objects, lambda: list(_names(lambda value: value.upper())))
    assert len(db.statement_cache) == before + 1
    # Defaults of other objects, variables of an enclosing call, methods of other objects: their own rows.
    for suffix in ("-x", "-y", "-x"):
        rows = await objects.execute(_names(_suffixed(suffix)))
        assert {row[0][-2:] for row in rows} == {suffix}
        rows = await objects.execute(_names(lambda value, s=suffix: value + s + s))
        assert {row[0][-4:] for row in rows} == {suffix * 2}
        rows = await objects.execute(_names(_ending(suffix.upper())))
        assert {row[0][-2:] for row in rows} == {suffix.upper()}
        rows = await objects.execute(_names(_Tagger(suffix + "!").convert))
        assert {row[0][-3:] for row in rows} == {suffix + "!"}
    tagger = _Tagger("?")
    keys = {query_keys.walk(_names(tagger.convert)).key for _ in range(3)}
    assert len(keys) == 1  # a bound method is made at each look-up: its function and object key it
    # A value's converter, the same way.
    for tag in ("1", "2", "1"):
        query = Author.select().where(Author.name == peewee.Value("a", converter=_Tagger(tag).convert))
        assert [graph(row) for row in await objects.execute(query)] == [
            graph(row) for row in sync(objects, lambda q=query: list(q.clone()))
        ]
        assert [row.name for row in await objects.execute(query)] == [f"a{tag}"]
    keys = {
        query_keys.walk(Author.select().where(Author.name == peewee.Value("a", converter=tagger.convert))).key
        for _ in range(3)
    }
    assert len(keys) == 1


async def test_objects_constructor_made_at_each_call(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """``.objects()`` with a constructor made at each call: one shape (the SQL is the same), each
    call's rows made by its own constructor."""
    before = len(db.statement_cache)
    for tag in ("a", "b", "a", "c"):
        query = Author.select(Author.id, Author.name).where(Author.id > 0).objects(_tagging(tag))
        rows = await objects.execute(query)
        assert rows and {row[0] for row in rows} == {tag}
        assert [row[1] for row in rows] == [row[1] for row in sync(objects, lambda q=query: list(q.clone()))]
    assert len(db.statement_cache) == before + 1
    made = await objects.execute(Author.select().where(Author.id > 0).order_by(Author.id).objects(Post))
    assert made and all(type(row) is Post for row in made)
    plain = await objects.execute(Author.select().where(Author.id > 0).order_by(Author.id))
    assert all(type(row) is Author for row in plain)


def _author_table(
    alias: str | None = None, columns: Any = ("id", "name", "age"), pk: str | None = "id"
) -> Any:
    """The authors' table as a ``peewee.Table``, made anew at each call."""
    return peewee.Table("author", columns, primary_key=pk, alias=alias)


def _table_queries() -> list[tuple[str, Any]]:
    """Queries of tables made at this call, each as peewee writes it differently."""
    one = _author_table()
    other = _author_table()
    aliased = _author_table(alias="writer")
    bare = peewee.Table("author")
    return [
        ("select", one.select(one.id, one.name).where(one.age > 20).order_by(one.id)),
        ("all columns", one.select().where(one.id > 0)),
        ("no columns", bare.select(bare.c.name).where(bare.c.id > 0)),
        ("one table twice", one.select(one.name).where(one.id.in_(one.select(one.id).where(one.age > 21)))),
        # Equal tables are one source to peewee (its hash): their aliases are the same.
        (
            "two equal tables",
            one.select(one.name).where(one.id.in_(other.select(other.id).where(other.age > 21))),
        ),
        ("aliased", aliased.select(aliased.name).where(aliased.id > 1)),
        (
            "self join",
            one.select(one.name, aliased.name).join(aliased, on=(one.id == aliased.id)).where(one.id > 0),
        ),
        ("update", one.update(age=one.age + 0).where(one.id == 0)),
        ("insert, default columns", _author_table(columns=("id", "name")).insert([(100, "x")])),
        ("insert, primary key", one.insert(name="y", age=3)),
        ("insert, no primary key", _author_table(pk=None).insert(name="y", age=3)),
        ("delete", one.delete().where(one.id == -1)),
    ]


def _keys_of(queries: Any) -> list[Any]:
    """The key of each query, ``None`` for one peewee compiles every time."""
    keys = []
    for query in queries:
        try:
            keys.append(query_keys.walk(query).key)
        except query_keys.Unkeyable:
            keys.append(None)
    return keys


async def test_tables_made_at_each_call(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """A ``peewee.Table`` made at each call is keyed by what its SQL depends on, not by identity: one
    shape for all the calls, peewee's SQL for each, and no shape shared where peewee writes another."""
    for name, query in _table_queries():
        assert compiler.compile_query(db, query) == compiler.peewee_compile(db, query), name
    keys = _keys_of(query for _, query in _table_queries())
    assert keys == _keys_of(query for _, query in _table_queries())
    names = [name for name, _ in _table_queries()]
    assert [name for name, key in zip(names, keys, strict=True) if key is None] == ["insert, default columns"]
    assert keys[names.index("one table twice")] == keys[names.index("two equal tables")]
    sqls = [compiler.peewee_compile(db, query)[0] for _, query in _table_queries()]
    for key, sql in zip(keys, sqls, strict=True):
        # One key, one SQL; the other way round, only the equal tables share one.
        assert {
            other_sql for other_key, other_sql in zip(keys, sqls, strict=True) if key and other_key == key
        } <= {sql}
    assert len({key for key in keys if key is not None}) == len(keys) - 2
    before = len(db.statement_cache)
    for _ in range(4):
        one = _author_table()
        rows = await objects.execute(one.select(one.id, one.name).where(one.age > 21).order_by(one.id))
        assert rows == sync(
            objects, lambda t=one: list(t.select(t.id, t.name).where(t.age > 21).order_by(t.id).bind(db))
        )
        assert await objects.execute(one.update(age=one.age + 0).where(one.id == -1)) == 0
    assert len(db.statement_cache) == before  # the shapes compiled above, for other tables of the same SQL
    created = await objects.execute(_author_table().insert(name="made", age=1))
    assert created == (await objects.get(Author, name="made")).id
    other_name = peewee.Table("author_elsewhere", ("id", "name"))
    assert "author_elsewhere" in compiler.compile_query(db, other_name.select(other_name.id))[0]


async def test_a_changed_table_makes_another_key(objects: peewee_async.Manager, db: Any, data: Any) -> None:
    """A new table name (or database) gives the model a new table: the old statement is not reused."""
    before = query_keys.walk(Author.select().where(Author.id == 1)).key
    Author._meta.set_table_name("author_renamed")
    try:
        after = query_keys.walk(Author.select().where(Author.id == 1)).key
        assert before != after
        assert "author_renamed" in compiler.compile_query(db, Author.select().where(Author.id == 1))[0]
    finally:
        Author._meta.set_table_name("author")
    assert "author_renamed" not in compiler.compile_query(db, Author.select().where(Author.id == 1))[0]


async def test_verification_fails_on_a_difference(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """The verification mode is not a formality: a cached statement made wrong is caught."""
    query = Author.select().where(Author.id == 1)
    await objects.execute(query)
    shape = compiler.lookup(db, Author.select().where(Author.id == 2))
    assert shape is not None
    shape[2].sql = shape[2].sql.replace("=", "<>")
    with pytest.raises(compiler.VerificationError, match="differs from peewee"):
        await objects.execute(Author.select().where(Author.id == 3))
    db.statement_cache.clear()


class Blobbed(peewee.Model):
    data = peewee.BlobField()


async def test_verification_compares_a_wrapped_value_by_what_it_holds(
    objects: peewee_async.Manager, db: Any, bind_models: Any, verify: None
) -> None:
    """A blob reaches psycopg2 in its Binary wrapper, a C type equal only to itself and with no
    attributes to compare: verification compares the value it wraps, and still sees a change."""
    bind_models(Blobbed)
    for value in (b"one", b"two"):  # the second from the cache, verified
        await objects.create(Blobbed, data=value)
    assert sorted(bytes(row.data) for row in await objects.execute(Blobbed.select())) == [b"one", b"two"]


def test_a_wrapped_value_is_the_same_when_what_it_holds_is() -> None:
    binary = pytest.importorskip("psycopg2").Binary
    assert compiler._same_param(binary(b"x"), binary(b"x"))
    assert not compiler._same_param(binary(b"x"), binary(b"y"))


async def test_verification_of_rows_fails_on_a_difference(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    query = Post.select(Post, Author).join(Author).where(Post.id == 1)
    await objects.execute(query)
    found = compiler.lookup(db, Post.select(Post, Author).join(Author).where(Post.id == 2))
    assert found is not None and found[2].rows is not None
    plan = found[2].rows
    real = plan.build

    def wrong(rows: Any) -> Any:
        built = real(rows)
        for row in built:
            row.__data__["title"] = "changed"
        return built

    plan.build = wrong
    with pytest.raises(compiler.VerificationError, match="differs from peewee"):
        await objects.execute(Post.select(Post, Author).join(Author).where(Post.id == 3))
    db.statement_cache.clear()


#: Model rows built by code written for their shape, and those left to peewee's wrapper.
GENERATED_ROWS = [
    "join models",
    "aliased join",
    "model with an expression",
    "annotated count",
    "join with an expression",
    "value named as a field",
    "value named as a method",
    "join objects",
    "join objects, a name twice",
    "UNION",
]
PEEWEE_ROWS = ["value named as a foreign key's id"]


@pytest.mark.parametrize("name", GENERATED_ROWS + PEEWEE_ROWS)
async def test_who_builds_the_rows(objects: peewee_async.Manager, db: Any, data: Any, name: str) -> None:
    """Model rows get generated code, unless a value's name is a property or accessor of the model."""
    build = dict(SELECTS)[name]
    await objects.execute(build(1))
    found = compiler.lookup(db, build(2))
    assert found is not None and found[2].rows is not None, name
    generated = found[2].rows.build.__code__.co_filename.startswith("<peewee_async")
    assert generated == (name in GENERATED_ROWS), name


class Unique(peewee.Model):
    name = peewee.CharField(max_length=20, unique=True)
    hits = peewee.IntegerField(default=0)


async def test_inserts(
    objects: peewee_async.Manager, db: Any, backend: str, data: Any, bind_models: Any, verify: None
) -> None:
    """insert_many() of dicts and of tuples, and ON CONFLICT: cached, the rows as peewee writes them."""
    bind_models(Unique)
    author = data["authors"][0]
    await objects.create(Unique, name="same", hits=1)
    for k in (1, 2):
        rows = [{"name": f"n{k}-{i}", "age": i} for i in range(3)]
        await objects.execute(Author.insert_many(rows))
        assert compiler.lookup(db, Author.insert_many(rows)) is not None
        await objects.execute(Author.insert_many([(f"m{k}", k)], fields=[Author.name, Author.age]))
        # A model instance for a foreign key, None for another.
        posts = [{"author": author, "title": f"p{k}", "score": k, "editor": None}]
        await objects.execute(Post.insert_many(posts))
        assert compiler.lookup(db, Post.insert_many(posts)) is not None
        if family(backend) == "mysql":
            upsert = Unique.insert(name="same", hits=k).on_conflict(update={Unique.hits: Unique.hits + k})
        else:
            upsert = Unique.insert(name="same", hits=k).on_conflict(
                conflict_target=[Unique.name], update={Unique.hits: Unique.hits + k}
            )
        await objects.execute(upsert)
    names = sync(objects, lambda: sorted(a.name for a in Author.select().where(Author.name.startswith("n"))))
    assert names == [f"n{k}-{i}" for k in (1, 2) for i in range(3)]
    assert sync(
        objects, lambda: [(p.author_id, p.score) for p in Post.select().where(Post.title.in_(["p1", "p2"]))]
    )
    assert sync(objects, lambda: Unique.get(Unique.name == "same").hits) == 1 + 1 + 2


async def test_keys_returned_by_an_insert_many(
    objects: peewee_async.Manager, db: Any, backend: str, data: Any, verify: None
) -> None:
    """The keys an insert_many returns (RETURNING, on PostgreSQL) are built by its shape's row plan."""
    for k in (1, 2):
        rows = [{"name": f"r{k}-{i}", "age": i} for i in range(3)]
        result = await objects.execute(Author.insert_many(rows))
        # A new query, as execute() makes it ready (peewee 3.17's compile marks the one it ran).
        fresh = Author.insert_many(rows)
        execution.prepare_insert(db, fresh)
        found = compiler.lookup(db, fresh)
        assert found is not None
        if family(backend) == "postgres":
            made = sync(
                objects, lambda k=k: [a.id for a in Author.select().where(Author.name.startswith(f"r{k}-"))]
            )
            assert sorted(result) == sorted((key,) for key in made)
            assert found[2].rows is not None
        else:
            assert found[2].rows is None  # no rows: the last insert id


async def test_values_bound_as_they_are_or_converted(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """Leaves of the type a field binds as it is go as they are; any other value is converted as
    peewee converts it (a str or a bool for an IntegerField), in rows of all plain values and not."""
    author = data["authors"][0]
    shapes = {
        "plain": lambda k: [{"name": f"v{k}-{i}", "age": 30 + i} for i in range(3)],
        "plain, one row": lambda k: [{"name": f"u{k}", "age": 60 + k}],
        "text for a number": lambda k: [{"name": f"w{k}", "age": str(40 + k)}],
        "a bool for a number": lambda k: [{"name": f"x{k}", "age": k == 1}],
        "None among them": lambda k: [{"name": f"y{k}-{i}", "age": None if i == 1 else i} for i in range(3)],
        "text among numbers": lambda k: [
            {"name": f"z{k}-{i}", "age": str(i) if i == 2 else i} for i in range(3)
        ],
    }
    for name, rows in shapes.items():
        for k in (1, 2):
            await objects.execute(Author.insert_many(rows(k)))
            found = compiler.lookup(db, Author.insert_many(rows(k)))
            assert found is not None, name
            assert found[2].leaves_as_they_are is name.startswith("plain"), name
    await objects.execute(Author.update(age=Author.age + 1).where(Author.name == "w1"))
    await objects.execute(Post.insert_many([{"author": author, "title": "z", "score": 5, "editor": None}]))
    ages = sync(objects, lambda: {a.name: a.age for a in Author.select() if a.name[0] in "uvwxyz"})
    assert ages == {
        **{f"v{k}-{i}": 30 + i for k in (1, 2) for i in range(3)},
        "u1": 61,
        "u2": 62,
        "w1": 42,
        "w2": 42,
        "x1": 1,
        "x2": 0,
        **{f"y{k}-{i}": None if i == 1 else i for k in (1, 2) for i in range(3)},
        **{f"z{k}-{i}": i for k in (1, 2) for i in range(3)},
    }


async def test_inserts_from_a_generator(
    objects: peewee_async.Manager, db: Any, data: Any, verify: None
) -> None:
    """Rows from a generator (read once): compiled by peewee each time."""
    author = data["authors"][0]
    rows = ({"author": author, "title": f"g{i}", "score": i} for i in range(2))
    await objects.execute(Post.insert_many(rows))
    titles = sync(
        objects, lambda: sorted((p.title, p.score) for p in Post.select().where(Post.title << ["g0", "g1"]))
    )
    assert titles == [("g0", 0), ("g1", 1)]


#: One entry per call of Stamped's callable default.
STAMP_CALLS: list[int] = []


def _stamp() -> int:
    STAMP_CALLS.append(1)
    return 7


class Stamped(peewee.Model):
    """Defaults of each kind: callable, constant, and on a field with a column name of its own."""

    label = peewee.CharField(max_length=20)
    stamp = peewee.IntegerField(default=_stamp)
    kind = peewee.CharField(max_length=10, default="plain")
    note = peewee.CharField(max_length=20, null=True, column_name="note_text", default="none")


# Each case: its rows for k, and how many of them leave the callable default out.
DEFAULTED_INSERTS: list[tuple[str, Callable[[int], Any], int]] = [
    ("one dict, all defaults left out", lambda k: Stamped.insert(label=f"one{k}"), 1),
    ("one dict, one default given", lambda k: Stamped.insert(label=f"kind{k}", kind="given"), 1),
    ("the callable given", lambda k: Stamped.insert(label=f"given{k}", stamp=k), 0),
    ("many rows by name", lambda k: Stamped.insert_many([{"label": f"m{k}-{i}"} for i in range(3)]), 3),
    (
        "many rows by field",
        lambda k: Stamped.insert_many([{Stamped.label: f"f{k}-{i}", Stamped.kind: "f"} for i in range(2)]),
        2,
    ),
    (
        "the default of a field with a column name given",
        lambda k: Stamped.insert_many([{"label": f"c{k}", "note": "given"}]),
        1,
    ),
    (
        "tuples of the fields named",
        lambda k: Stamped.insert_many([(f"t{k}-{i}",) for i in range(2)], fields=[Stamped.label]),
        2,
    ),
    (
        "tuples naming a default",
        lambda k: Stamped.insert_many([(f"u{k}", "given")], fields=[Stamped.label, Stamped.kind]),
        1,
    ),
    (
        "tuples naming the callable by name",
        lambda k: Stamped.insert_many([[f"s{k}", k], [f"s{k}+", k + 1]], fields=["label", "stamp"]),
        0,
    ),
]


@pytest.mark.parametrize(("name", "build", "calls"), DEFAULTED_INSERTS, ids=[c[0] for c in DEFAULTED_INSERTS])
async def test_inserts_leaving_defaults_out(
    objects: peewee_async.Manager, db: Any, bind_models: Any, verify: None, name: str, build: Any, calls: int
) -> None:
    """The defaults a row leaves out: parameters of a cached statement, called once per row as by peewee.

    For each k the statement is the one peewee compiles for the same query, the
    callable default is called once for each row that leaves it out (at the
    first run of the shape too), and the rows stored are those sync peewee
    stores for the same query.
    """
    bind_models(Stamped)

    def stored_and_cleared() -> list[tuple[Any, ...]]:
        rows = [(s.label, s.stamp, s.kind, s.note) for s in Stamped.select().order_by(Stamped.id)]
        Stamped.delete().execute()
        return rows

    for k in (1, 2, 1):
        before = len(STAMP_CALLS)
        await objects.execute(build(k))  # the first time, the shape is compiled here
        assert len(STAMP_CALLS) - before == calls, name
        found = compiler.lookup(db, build(k))
        assert found is not None, name
        assert (found[0], found[1]) == compiler.peewee_compile(db, build(k)), name
        ours = sync(objects, stored_and_cleared)
        sync(objects, build(k).execute)
        assert ours == sync(objects, stored_and_cleared), name
        inserted = build(k)._insert
        assert len(ours) == (len(inserted) if isinstance(inserted, list) else 1), name


async def test_exists(objects: peewee_async.Manager, db: Any, data: Any, verify: None) -> None:
    """exists() of model selects, filtered, joined and compound, as peewee's query.exists() answers."""
    for k in (1, 40):
        queries = [
            Author.select().where(Author.age > 20 + k),
            Post.select(Post, Author).join(Author).where(Post.score > k),
            Author.select(Author.name).where(Author.id == k),
            Author.select(Author.id).where(Author.id == k)
            | Author.select(Author.id).where(Author.id == k + 1),
        ]
        for query in queries:
            assert await objects.exists(query) is sync(objects, query.exists), query.sql()
    with pytest.raises(TypeError, match="select query"):
        await objects.exists(Author)  # type: ignore[arg-type]

"""The tables of the twitter-like example: users, who follows whom, and messages.

The models name no database: :func:`bind` attaches them to the one the app
runs on, so the same models serve SQLite, PostgreSQL and MySQL.
"""

from __future__ import annotations

import datetime

import peewee

import peewee_async


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class BaseModel(peewee.Model):
    pass


class User(BaseModel):
    username = peewee.CharField(unique=True, max_length=40)
    #: ``scrypt$n$r$p$salt$key`` (see auth.py), never the password itself.
    password = peewee.CharField()
    email = peewee.CharField()
    join_date = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "tweepee_user"

    # Queries only: a caller awaits them, e.g. ``await objects.count(user.following())``.
    # Used as a subquery, each selects only User.id.

    def following(self) -> peewee.ModelSelect:
        """The users this user follows."""
        return (
            User.select()
            .join(Relationship, on=Relationship.to_user)
            .where(Relationship.from_user == self)
            .order_by(User.username)
        )

    def followers(self) -> peewee.ModelSelect:
        """The users who follow this user."""
        return (
            User.select()
            .join(Relationship, on=Relationship.from_user)
            .where(Relationship.to_user == self)
            .order_by(User.username)
        )

    def is_following_query(self, other: User) -> peewee.ModelSelect:
        """A query of the one relationship row (if any) by which this user follows ``other``."""
        return Relationship.select().where((Relationship.from_user == self) & (Relationship.to_user == other))


class Relationship(BaseModel):
    from_user = peewee.ForeignKeyField(User, backref="relationships", on_delete="CASCADE")
    to_user = peewee.ForeignKeyField(User, backref="related_to", on_delete="CASCADE")

    class Meta:
        table_name = "tweepee_relationship"
        indexes = ((("from_user", "to_user"), True),)


class Message(BaseModel):
    user = peewee.ForeignKeyField(User, backref="messages", on_delete="CASCADE")
    content = peewee.TextField()
    pub_date = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "tweepee_message"


MODELS: list[type[peewee.Model]] = [User, Relationship, Message]


def bind(database: peewee_async.AsyncDatabase) -> None:
    """Point every model of the app at ``database``."""
    database.bind(MODELS)  # type: ignore[attr-defined]


def create_tables(database: peewee_async.AsyncDatabase) -> None:
    """Create the missing tables with sync peewee (before ``allow_sync`` is turned off)."""
    with database:  # type: ignore[attr-defined]
        database.create_tables(MODELS)  # type: ignore[attr-defined]

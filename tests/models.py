"""Models shared by the tests; the ``db`` fixture binds them to the backend under test."""

import uuid

import peewee


class TestModel(peewee.Model):
    __test__ = False  # not a test class, despite the name
    text = peewee.CharField(max_length=100, unique=True)
    data = peewee.TextField(default="")

    def __str__(self) -> str:
        return self.text


class TestModelAlpha(peewee.Model):
    __test__ = False
    text = peewee.CharField()


class TestModelBeta(peewee.Model):
    __test__ = False
    alpha = peewee.ForeignKeyField(TestModelAlpha, backref="betas")
    text = peewee.CharField()


class TestModelGamma(peewee.Model):
    __test__ = False
    beta = peewee.ForeignKeyField(TestModelBeta, backref="gammas", null=True)
    text = peewee.CharField()


class UUIDTestModel(peewee.Model):
    id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
    text = peewee.CharField()


class NaturalKeyModel(peewee.Model):
    key = peewee.CharField(primary_key=True, max_length=40)
    value = peewee.IntegerField(default=0)


class CompositeKeyModel(peewee.Model):
    left = peewee.IntegerField()
    right = peewee.IntegerField()
    label = peewee.CharField(default="")

    class Meta:
        primary_key = peewee.CompositeKey("left", "right")


ALL_MODELS = [
    TestModel,
    TestModelAlpha,
    TestModelBeta,
    TestModelGamma,
    UUIDTestModel,
    NaturalKeyModel,
    CompositeKeyModel,
]

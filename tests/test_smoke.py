from .models import TestModel


async def test_create_and_get(objects):
    created = await objects.create(TestModel, text="hello")
    fetched = await objects.get(TestModel, id=created.id)
    assert fetched.text == "hello"

"""tweepee, a twitter-like example app on Starlette and peewee-async (see README.md)."""

"""``python -m examples.twitter [URL] [--port N]``."""

from .app import main

main()

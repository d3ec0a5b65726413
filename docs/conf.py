"""Sphinx configuration of the peewee-async documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` from the repository root.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# autodoc imports the package from this checkout, installed or not.
sys.path.insert(0, str(ROOT))

import peewee_async  # noqa: E402

project = "peewee-async"
author = "peewee-async contributors"
copyright = "peewee-async contributors"
release = peewee_async.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]

exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "alabaster"
html_title = f"peewee-async {release}"
html_theme_options = {
    "description": "asyncio for the peewee ORM",
    "fixed_sidebar": True,
}

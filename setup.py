"""Kept for `python setup.py install` users; everything is declared in pyproject.toml."""

from setuptools import setup

setup()

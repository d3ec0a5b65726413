"""Benchmarks of peewee-async against its raw drivers and against sync peewee.

Run ``python -m benchmarks --quick`` from the repository root; ``--help`` lists
the options, and ``docs/benchmarks.rst`` explains the table.
"""

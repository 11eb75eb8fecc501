"""Alembic migrations of the send log, run in code by ``repsend.sendlog`` (there is no alembic.ini).

Each revision in ``versions/`` is one ordered, named step; ``tests/test_sendlog.py`` pins the schema
they produce, so that a change to the tables must come with a new revision here.
"""

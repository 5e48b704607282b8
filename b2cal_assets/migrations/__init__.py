"""Alembic migrations of the platform database (``b2cal db upgrade``; env.py, versions/).

``HEAD`` is the newest revision: stores check the database against it without loading
Alembic (a test checks it matches the script directory). Add a revision with
``b2cal db revision -m "<what changes>"`` after changing a table, then write its data steps.
"""

REVISIONS = ("0001_pre_migration", "0002_utc_timestamps")
HEAD = REVISIONS[-1]

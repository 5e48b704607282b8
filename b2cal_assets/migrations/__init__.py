"""Alembic migrations of the platform database (``b2cal db upgrade``; env.py, versions/).

``HEAD`` is the newest revision: stores check the database against it without loading
Alembic (a test checks it matches the script directory). After changing a table, write a
revision in ``versions/`` (start from Alembic's autogenerate on a database at the head::

    python -c "from alembic import command; from b2cal_assets.database import alembic_config as c, engine_for as e; \
    conn = e('sqlite:////tmp/head.sqlite').connect(); command.revision(c(conn), 'what changes', autogenerate=True)"

then add its data steps), append it to ``REVISIONS``, and keep ``test_models_and_migrations_agree`` green.
"""

REVISIONS = ("0001_pre_migration", "0002_utc_timestamps", "0003_proxy_audit")
HEAD = REVISIONS[-1]

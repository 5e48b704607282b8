"""The conditions database: payloads, intervals of validity and global tags (no Dagster here).

Where things are:

* ``iov``: IoV with the conditions-database semantics (its runs are ``run_identity.ExpRun``).
* ``payloads``: PayloadConstants (value, error, channel, status) and the ROOT payload files.
* ``tags``: the global-tag states and their transition table.
* ``store``: ConditionsStore, the tables in the platform database and the payload directory;
  ``add_payloads`` writes a calibration's payloads and IoVs into an OPEN tag atomically.
* ``running_update``: ``update_running_tag``, merging a VALIDATED staging tag into RUNNING.
* ``export``: ``export_local_database``, a basf2 local database (database.txt + ROOT files).
* ``cli``: ``b2cal conditions tags | show | export``.
* ``errors``: ConditionsError, the root every exception of this package derives from, and most of them.

This package file imports nothing, so ``from b2cal_assets.conditions.iov import IoV`` stays
light for code that only needs IoV arithmetic.
"""

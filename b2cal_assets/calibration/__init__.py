"""The calibration domain, in three layers a newcomer can tell apart by name.

- ``framework/``: the pure calibration framework (no Dagster, no database). The plug-in
  contract (``contract.Calibration``, ``CollectorOutput``), settings and their rules, algorithm
  results, IoV strategies, input selection, bucket planning and the bounded iteration loop
  (``runner``).
- ``plugins/``: the prompt calibrations, one module each, found by
  ``plugins.discover_calibrations``. Adding a calibration is adding a module there.
- this package's top level: the Dagster shells (``definitions``, ``assets``, ``sensors``,
  ``partitions``) and the bucket table (``bucket_store``, SQLAlchemy); they only wire the
  framework and the plug-ins to Dagster and the platform database.
"""

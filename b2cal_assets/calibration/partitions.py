"""Partitions of the calibration assets, and why they are shaped this way.

- Calibration assets (the reduce step) are partitioned by bucket: dynamic set ``buckets``
  with keys ``e0026.b0001``.
- Collector assets (the map step) are partitioned two-dimensionally, bucket x run. A run
  belongs to exactly one bucket, so only the (its bucket, run) cell is ever materialised.
  Dagster has no supported many-to-one mapping between two dynamic partition sets, and the
  two-dimensional key gives exact lineage instead: a calibration partition depends on the
  collector partitions of its bucket (``MultiToSingleDimensionPartitionMapping("bucket")``),
  each collector partition on its raw run (``...("run")``), so the UI shows which runs fed
  each bucket's constants, and the asset's partition grid reads as bucket rows of runs.
- The cross product is sparse, so these assets are launched by the bucket scheduler sensor
  (which requests exactly the cells of each bucket), never by eager automation (which would
  try every empty cell).
"""

from dagster import DynamicPartitionsDefinition, MultiPartitionsDefinition

from b2cal_assets.runs.partitions import run_partitions

BUCKET_PARTITIONS_NAME = "buckets"
BUCKET_DIMENSION = "bucket"
RUN_DIMENSION = "run"

bucket_partitions = DynamicPartitionsDefinition(name=BUCKET_PARTITIONS_NAME)
bucket_run_partitions = MultiPartitionsDefinition({BUCKET_DIMENSION: bucket_partitions, RUN_DIMENSION: run_partitions})

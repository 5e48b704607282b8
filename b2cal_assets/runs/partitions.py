"""Runs are a dynamic partition set: keys like ``e0026.r00012`` added by the new-run sensor."""

from dagster import DynamicPartitionsDefinition

RUN_PARTITIONS_NAME = "runs"
run_partitions = DynamicPartitionsDefinition(name=RUN_PARTITIONS_NAME)

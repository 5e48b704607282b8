"""The validation_reports sensor's requests, evaluated with build_sensor_context as the daemon would."""

from dagster import DagsterInstance, build_sensor_context

from b2cal_assets.calibration.bucket_store import CandidateRun
from b2cal_assets.calibration.framework.buckets import BucketPolicy, BucketVersion
from b2cal_assets.database import platform_database
from b2cal_assets.definitions import build_definitions
from b2cal_assets.validation.sensors import REPORT_SENSOR_NAME


def test_each_new_result_gets_one_report_run_queued_after_calibration_work(tmp_path, sqlite_url):
    defs = build_definitions(incoming_root=str(tmp_path / "incoming"), database_url=sqlite_url, payload_dir=str(tmp_path / "payloads"))
    buckets = platform_database(sqlite_url).buckets()
    buckets.assign([CandidateRun("e0026.r00001", 26, 1, 10.0)], BucketPolicy(max_runs=5))
    buckets.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(1, False), [], ["e0026.r00001"], "run-1")
    sensor = defs.resolve_sensor_def(REPORT_SENSOR_NAME)
    with DagsterInstance.ephemeral() as instance, build_sensor_context(instance=instance, resources=dict(defs.resources)) as context:
        (request,) = sensor(context).run_requests
    assert request.run_key == "report:e0026.b0001:BeamSpot:run-1"
    assert request.partition_key == "e0026.b0001"
    assert [key.path[-1] for key in request.asset_selection] == ["BeamSpot_report"]
    # Reports wait for no calibration and no calibration waits for them: they are dequeued last.
    assert request.tags["b2cal/step"] == "validation_report" and request.tags["dagster/priority"] == "-1"

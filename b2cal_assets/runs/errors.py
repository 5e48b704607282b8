"""The root of the runs domain's exceptions (discovery, records, ingestion, the synthetic generator)."""


class RunsError(Exception):
    """Base of every exception the runs domain (b2cal_assets.runs) raises."""

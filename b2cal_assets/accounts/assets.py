"""The ``dirac_accounts`` asset: the proxy's accounts, synced from the configured source.

Thin on purpose: the resource names the source (DiracX or a Registry YAML file), the work is
``b2cal_assets.accounts.sync.sync_accounts``; this translates its outcome into Dagster
metadata (counts and the diff) and a failure into a failed run whose message says why, while
the store keeps the last good set.
"""

# No `from __future__ import annotations`: Dagster inspects the real type of `context`.
import dagster as dg

from b2cal_assets.accounts.errors import AccountsSettingsError, AccountsSyncError
from b2cal_assets.accounts.resources import AccountsResource
from b2cal_assets.accounts.sync import SyncOutcome, sync_accounts

# Metadata lists are for people; keep the event log small when thousands change at once.
_MAX_LISTED = 50


def _names(names: tuple[str, ...]) -> dg.MetadataValue:
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return dg.MetadataValue.text(shown or "-")


def outcome_metadata(outcome: SyncOutcome) -> dict[str, dg.MetadataValue]:
    """Counts, the diff, and where the set came from (URL and VO: no credentials)."""
    return {
        "accounts": dg.MetadataValue.int(outcome.account_count),
        "dns": dg.MetadataValue.int(outcome.dn_count),
        "suspended": dg.MetadataValue.int(outcome.suspended_count),
        "changed": dg.MetadataValue.bool(outcome.changed),
        "generation": dg.MetadataValue.int(outcome.generation or 0),
        "etag": dg.MetadataValue.text(outcome.etag or "-"),
        "source": dg.MetadataValue.text(outcome.source),
        "added_count": dg.MetadataValue.int(len(outcome.diff.added)),
        "removed_count": dg.MetadataValue.int(len(outcome.diff.removed)),
        "changed_count": dg.MetadataValue.int(len(outcome.diff.changed)),
        "added": _names(outcome.diff.added),
        "removed": _names(outcome.diff.removed),
        "changed_users": _names(outcome.diff.changed),
        "warnings": dg.MetadataValue.int(len(outcome.warnings)),
    }


# A failure this asset raises is deliberate (bad settings, or a sync failure already recorded):
# run retries are for crashed run workers, and the next tick is the retry. The schedule's job
# carries this tag; the asset adds it to its own run so a materialisation launched by hand
# behaves the same (Dagster reads the run's tags when the run fails).
NO_RUN_RETRY = {"dagster/retry_on_asset_or_op_failure": "false"}


def _no_run_retry(context: dg.AssetExecutionContext) -> None:
    context.instance.add_run_tags(context.run.run_id, NO_RUN_RETRY)


@dg.asset(
    group_name="accounts",
    kinds={"python", "sql"},
    description=(
        "Accounts of the Belle II VO (users, certificate DNs, e-mail, suspension, DIRAC groups with "
        "VOMS roles and properties) synced from DIRAC/DiracX into the platform database; read by the proxy."
    ),
)
def dirac_accounts(context: dg.AssetExecutionContext, accounts: AccountsResource) -> dg.MaterializeResult:
    try:
        source = accounts.source()
    except AccountsSettingsError as error:
        # Nothing was attempted, so nothing is recorded in the store: the deployment must change.
        _no_run_retry(context)
        raise dg.Failure(description=f"accounts sync not started: {error}", allow_retries=False) from None
    store = accounts.store()
    try:
        outcome = sync_accounts(store, source)
    except AccountsSyncError as error:
        _no_run_retry(context)
        status = store.status()
        raise dg.Failure(
            description=f"accounts sync failed ({error.reason}): {error}",
            metadata={
                "reason": dg.MetadataValue.text(error.reason),
                "kept_generation": dg.MetadataValue.int(status.generation or 0),
                "last_good_sync_at": dg.MetadataValue.text(
                    status.last_good_sync_at.isoformat() if status.last_good_sync_at else "never"
                ),
            },
            allow_retries=False,  # the next scheduled tick is the retry
        ) from None
    for warning in outcome.warnings[:_MAX_LISTED]:
        context.log.warning(f"registry: {warning}")
    # The config commit (or generation for files) versions the data: a 304 keeps the version.
    version = outcome.etag or f"generation-{outcome.generation}"
    return dg.MaterializeResult(metadata=outcome_metadata(outcome), data_version=dg.DataVersion(version))

"""Keep the accounts fresh: sync every 10 minutes, running as soon as the code location loads.

Why running by default: a stopped sync means people who left Belle II keep access until the
max-age rule trips; the sync must be on without anyone remembering to switch it on. Why the
schedule asks the source first: a site with no source configured (no DiracX yet) would
otherwise launch a run that can only fail, every 10 minutes; its ticks are skipped instead,
with the reason, and the schedule starts syncing as soon as a source setting appears.
"""

# No `from __future__ import annotations`: Dagster inspects the real types of the arguments.
import dagster as dg

from b2cal_assets.accounts.assets import NO_RUN_RETRY, dirac_accounts
from b2cal_assets.accounts.errors import AccountsSettingsError
from b2cal_assets.accounts.resources import AccountsResource
from b2cal_assets.accounts.sources import SOURCE_SETTINGS
from b2cal_assets.operations.automations import NEEDS_ANY_OF

dirac_accounts_job = dg.define_asset_job(
    "dirac_accounts_sync",
    selection=dg.AssetSelection.assets(dirac_accounts),
    description="Sync the accounts store from its source (DiracX or a Registry YAML file).",
    # A failed sync is recorded in the store and the next tick is the retry; run retries stay
    # for crashed run workers (a configuration error retried twice only makes three red runs).
    tags=NO_RUN_RETRY,
)


@dg.schedule(
    name="dirac_accounts_every_10_minutes",
    job=dirac_accounts_job,
    cron_schedule="*/10 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sync accounts every 10 minutes (an unchanged DiracX registry costs one 304); "
    "skipped while no accounts source is configured.",
    metadata={NEEDS_ANY_OF: ",".join(SOURCE_SETTINGS)},
)
def dirac_accounts_schedule(context: dg.ScheduleEvaluationContext, accounts: AccountsResource):  # type: ignore[no-untyped-def]
    try:
        accounts.source()
    except AccountsSettingsError as error:
        return dg.SkipReason(str(error))
    return dg.RunRequest()

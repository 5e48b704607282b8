"""Keep the accounts fresh: sync every 10 minutes, running as soon as the code location loads.

Why running by default: a stopped sync means people who left Belle II keep access until the
max-age rule trips; the sync must be on without anyone remembering to switch it on.
"""

from __future__ import annotations

import dagster as dg

from b2cal_assets.accounts.assets import dirac_accounts

dirac_accounts_job = dg.define_asset_job(
    "dirac_accounts_sync",
    selection=dg.AssetSelection.assets(dirac_accounts),
    description="Sync the accounts store from DIRAC (DiracX).",
)

dirac_accounts_schedule = dg.ScheduleDefinition(
    name="dirac_accounts_every_10_minutes",
    job=dirac_accounts_job,
    cron_schedule="*/10 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sync accounts from DIRAC every 10 minutes (an unchanged registry costs one 304).",
)

"""Everything the accounts domain contributes to the code location.

The main ``b2cal_assets/definitions.py`` merges it:
``dg.Definitions.merge(..., accounts_defs)``.
"""

from __future__ import annotations

import dagster as dg

from b2cal_assets.accounts.assets import dirac_accounts
from b2cal_assets.accounts.resources import AccountsResource
from b2cal_assets.accounts.schedules import dirac_accounts_job, dirac_accounts_schedule

accounts_defs = dg.Definitions(
    assets=[dirac_accounts],
    jobs=[dirac_accounts_job],
    schedules=[dirac_accounts_schedule],
    resources={"accounts": AccountsResource()},
)

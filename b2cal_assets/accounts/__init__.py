"""Accounts: the proxy's users, from the Belle II DIRAC registry (DiracX) or a Registry YAML file.

Core (no Dagster):

- ``registry``: DiracX ``Registry[<vo>]`` -> ``models.Account`` (username, DNs, e-mail,
  suspended, groups with VOMS role and properties); ``load_registry_yaml`` for files.
- ``diracx_source``: ``fetch_config`` with diracx-client, ``If-None-Match`` on the config
  ETag; settings from ``DIRACX_URL`` / ``DIRACX_CREDENTIALS_PATH`` / ``DIRACX_CA_PATH``.
- ``store``: ``platform_database(url).accounts()`` in the platform database; generations switched
  atomically; ``lookup_dn``, ``generation``, ``status``.
- ``sources``: the ``AccountsSource`` seam, one class per source (``DiracxSource``,
  ``RegistryFileSource``); ``accounts_source_from_environment`` picks the deployment's.
- ``sync``: ``sync_accounts(store, source)``, the one sync (fetch, validate, store a
  generation, record freshness); failures keep the last good set and are recorded with a
  reason (``errors``). ``sync_from_diracx`` / ``import_registry_yaml`` are shortcuts to it.
- ``freshness``: the maximum-age rule (deny or viewer once the set is too old).
- ``view``: ``AccountsView``, the proxy's in-memory DN map refreshed on a new generation.

Dagster layer: ``assets`` (``dirac_accounts``), ``resources`` (``AccountsResource``),
``schedules`` (every 10 minutes, RUNNING; ticks skipped while no source is configured),
all gathered in ``definitions.accounts_defs``.
CLI: ``cli.accounts`` (``b2cal accounts sync|list|show|import``).

The proxy::

    from b2cal_assets.database import platform_database
    from b2cal_assets.accounts.view import AccountsView
    from b2cal_assets.accounts.freshness import FreshnessPolicy, Access

    accounts = AccountsView(platform_database(url).accounts(), policy=FreshnessPolicy.from_env())
    verdict = accounts.verdict()            # Access.ALLOW / VIEWER / DENY + reason
    account = accounts.lookup_dn(slash_dn)  # None: unknown DN; account.suspended: deny
"""

"""DiracX app factory for the tests: the real server, with a 1 s config-revision cache.

DiracX notices a new commit in its config repository after its revision cache's soft TTL
(5 s, a class attribute). The tests change the repository many times; a 1 s TTL keeps the
suite fast without changing what is tested (ETags, 304s, served content). Runs inside the
DiracX server venv, imported by uvicorn's --factory.
"""

import diracx.core.sources as sources


def create_app():  # type: ignore[no-untyped-def]
    sources.DEFAULT_CS_REV_CACHE_SOFT_TTL = 1
    for name in dir(sources):
        candidate = getattr(sources, name)
        if isinstance(candidate, type) and "rev_cache_soft_ttl" in vars(candidate):
            candidate.rev_cache_soft_ttl = 1
    from diracx.routers import create_app as create_diracx_app

    return create_diracx_app()

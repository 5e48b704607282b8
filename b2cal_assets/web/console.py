"""The review pages' aiohttp shell, served by ``b2cal proxy`` under ``<path prefix>/b2cal/``.

The proxy authenticates the request as for any other path and hands it here with the
principal (``ProxyApp.handle``). Each page needs a permission of the proxy's policy (table
:data:`PAGES`, anything else is 404); a refusal raises the proxy's ForbiddenError, which the
proxy answers and audits as every other refusal. What a page shows is decided in the pure
modules (``review``, ``access``, ``actions``, ``manifest``); this module reads, renders, serves
files and checks the review actions' anti-forgery proofs on their way to ``/graphql``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import mimetypes
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
import jinja2
import sqlalchemy as sa
from aiohttp import web

from b2cal_assets import config
from b2cal_assets.proxy.audit_store import AuditQuery, AuditStore, attach_audit_store
from b2cal_assets.proxy.errors import BadRequestError, ForbiddenError, UpstreamError
from b2cal_assets.proxy.permissions import Permission
from b2cal_assets.proxy.transport import GraphQLRequest

from . import access, actions
from .guard import (
    NONCE_HEADER,
    SESSION_COOKIE,
    TOKEN_HEADER,
    ActionGuard,
    ActionRefused,
    cross_site,
    same_origin,
)
from .links import web_base_url
from .queries import StoreReviewSource, reports_dir_from_env, running_tag_from_env
from .review import (
    BUCKET_KEY,
    BadQuery,
    CalibrationInfo,
    CellState,
    Links,
    UnknownBucket,
    build_bucket_page,
    build_overview,
    format_number,
)

if TYPE_CHECKING:
    from b2cal_assets.proxy.decide import Principal
    from b2cal_assets.proxy.server import ProxyApp, ProxyState

log = logging.getLogger("b2cal.web")

ROOT = "/b2cal"
STATIC_DIR = Path(__file__).with_name("static")
# Permission each page needs (first matching prefix; deny by default: unlisted paths are 404
# after the read check). Admin pages show every account's DNs and everyone's actions.
PAGES: tuple[tuple[str, Permission], ...] = (
    ("/b2cal/admin/", access.ADMIN_PERMISSION),
    ("/b2cal/", Permission.READ),
)
RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Report files never change under one name without the manifest changing: cache an hour.
FILE_CACHE = "private, max-age=3600"
STATIC_CACHE = "private, max-age=300"
REPOSITORY_TTL_S = 60.0


def _not_found(text: str) -> web.Response:
    return web.Response(status=404, text=text, headers={"Cache-Control": "no-store"})


def _calibrations() -> list[CalibrationInfo]:
    """The calibrations as the code location defines them (discovered, like the assets)."""
    from b2cal_assets.calibration.plugins import discover_calibrations

    return [CalibrationInfo(name, c.settings.subsystem) for name, c in discover_calibrations().items()]


class WebConsole:
    """The review pages of one proxy process."""

    def __init__(self, state: ProxyState, *, reports_dir: Path | None = None, calibrations: list[CalibrationInfo] | None = None) -> None:
        self.state = state
        self.links = Links(state.config.path_prefix)
        secret = (config.WEB_SECRET.raw() or "").encode() or None
        self.guard = ActionGuard(secret)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("b2cal_assets.web", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["num"] = format_number
        self.templates.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M UTC") if d else "-"
        self._reports_dir = reports_dir
        self._calibration_list = calibrations
        self._source: StoreReviewSource | None = None
        self._repository: tuple[float, actions.Repository | None] = (float("-inf"), None)
        engine = getattr(getattr(state.accounts, "store", None), "engine", None)
        self.engine = engine
        self.audit_store: AuditStore | None = None
        self._audit_handler = None
        if engine is not None:
            try:
                self.audit_store = AuditStore(engine)
            except sa.exc.SQLAlchemyError as error:  # the proxy still serves; the log stream has every line
                log.error("audit table not available in the platform database: %s", str(error).splitlines()[0])
            else:
                self._audit_handler = attach_audit_store(self.audit_store)

    def close(self) -> None:
        if self._audit_handler is not None:
            self._audit_handler.close()

    # -- entry ------------------------------------------------------------------------------------

    @staticmethod
    def owns(path: str) -> bool:
        return path == ROOT or path.startswith(ROOT + "/")

    def _source_now(self) -> StoreReviewSource:
        if self._source is None:
            if self.engine is None:
                raise UpstreamError("the review pages need the platform database (the proxy's accounts database)")
            self._source = StoreReviewSource(self.engine, self._reports_dir or reports_dir_from_env(),
                                             self._calibration_list if self._calibration_list is not None else _calibrations())
        return self._source

    async def handle(self, app: ProxyApp, request: web.BaseRequest, principal: Principal, path: str) -> web.StreamResponse:
        """Answer a request for ``path`` (prefix-stripped, under /b2cal)."""
        if request.method not in ("GET", "HEAD"):
            # No page changes anything: actions are GraphQL launches to /graphql.
            raise ForbiddenError(f"{request.method} {path}: the review pages take GET only", reason="method not allowed here")
        permission = next((p for prefix, p in PAGES if (path + "/").startswith(prefix)), None)
        if permission is None or not self.state.policy.has(principal.grants, permission):
            needed = permission.value if permission else "a known page"
            raise ForbiddenError(f"{path}: needs {needed}; grants {principal.roles_tag}", reason=f"this page needs the {needed} permission")
        if path == ROOT:
            return web.Response(status=302, headers={"Location": self.links.overview()})
        started = time.perf_counter()
        response = await self._route(app, request, principal, path)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    async def _route(self, app: ProxyApp, request: web.BaseRequest, principal: Principal, path: str) -> web.StreamResponse:
        parts = path[len(ROOT) + 1:].split("/")
        if parts == [""]:
            return await self.overview(request, principal)
        if parts[0] == "buckets" and len(parts) == 2:
            return await self.bucket(app, request, principal, parts[1])
        if parts[0] == "files" and len(parts) == 4:
            return await self.report_file(request, *parts[1:])
        if parts[0] == "static" and len(parts) == 2:
            return await self.static_file(request, parts[1])
        if parts == ["me"]:
            return await self.me(request, principal)
        if parts == ["admin", "accounts"]:
            return await self.admin_accounts(request, principal)
        if parts == ["admin", "audit"]:
            return await self.admin_audit(request, principal)
        return self._page(request, principal, "not_found.html", {"path": path}, status=404)

    # -- rendering ---------------------------------------------------------------------------------

    def _session(self, request: web.BaseRequest) -> tuple[str, bool]:
        session = request.cookies.get(SESSION_COOKIE)
        if session and self.guard.valid_session(session):
            return session, False
        return self.guard.new_session(), True

    def _page(self, request: web.BaseRequest, principal: Principal, template: str, context: dict[str, Any], *, status: int = 200,
              session: tuple[str, bool] | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
        session = session or self._session(request)
        html = self.templates.get_template(template).render(
            links=self.links, principal=principal, is_admin=self.state.policy.has(principal.grants, access.ADMIN_PERMISSION),
            dagster_home=self.links.prefix + "/", csrf_token=self.guard.token(session[0], principal.dn), **context,
        )
        response = web.Response(text=html, content_type="text/html", status=status, headers=headers)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        # Only this origin's scripts, styles and images; no framing (clickjacking a sign-off button).
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        if session[1]:
            response.set_cookie(SESSION_COOKIE, session[0], path=(self.links.prefix or "") + "/", secure=True, httponly=True,
                                samesite="Strict")
        return response

    # -- pages -------------------------------------------------------------------------------------

    async def overview(self, request: web.BaseRequest, principal: Principal) -> web.Response:
        source = self._source_now()
        query = dict(request.rel_url.query)
        try:
            overview = await asyncio.to_thread(build_overview, source, self.links, query)
        except BadQuery as bad:
            raise BadRequestError(f"overview query: {bad}", reason=str(bad)) from None
        return self._page(request, principal, "overview.html", {"o": overview, "states": list(CellState)})

    async def bucket(self, app: ProxyApp, request: web.BaseRequest, principal: Principal, key: str) -> web.Response:
        source = self._source_now()
        try:
            page = await asyncio.to_thread(build_bucket_page, source, self.links, key)
        except UnknownBucket as unknown:
            return self._page(request, principal, "not_found.html", {"path": f"{ROOT}/buckets/{key}", "why": str(unknown)}, status=404)
        session = self._session(request)
        run_id = request.rel_url.query.get("run", "")
        if run_id and not RUN_ID.match(run_id):
            raise BadRequestError(f"run={run_id!r}", reason="run=<run id>")
        repository = await self._repository_now()
        allowed: dict[str, access.ActionView] = {}
        action_params: dict[str, Any] = {}
        launches = [] if repository is None else [
            (actions.SIGN_OFF, actions.sign_off_params(repository, key)),
            (actions.REJECT, actions.reject_params(repository, key, actions.REASON_PLACEHOLDER)),
        ]
        # The proxy's decisions and the run reads ask the webserver: concurrently.
        *decisions, (runs, current) = await asyncio.gather(
            *(self._decision(app, principal, params) for _, params in launches), self._review_runs(key, run_id))
        for (action, params), decision in zip(launches, decisions):
            shown = access.action_view(action, decision, page)
            if shown.allowed:
                shown = shown.with_nonce(self.guard.issue(session[0], principal.dn, key, action))
                action_params[action] = params
            allowed[action] = shown
        # Reload while the run is not done, to this URL without its fragment: the launch lands on
        # ...?run=<id>#review, and a meta refresh to a URL with a fragment is a same-document
        # scroll, no reload (the page then showed STARTING for ever).
        refresh = f"{self.links.bucket(key)}?{urlencode({'run': run_id})}" if current is not None and not current.done else None
        return self._page(request, principal, "bucket.html", {
            "p": page, "actions": allowed, "repository": repository, "runs": runs, "current": current,
            "launch_query": actions.LAUNCH_QUERY, "running_tag": running_tag_from_env(), "refresh": refresh,
            "token_header": TOKEN_HEADER, "nonce_header": NONCE_HEADER, "states": CellState, "action_params": action_params,
        }, session=session)

    async def report_file(self, request: web.BaseRequest, bucket: str, calibration: str, name: str) -> web.StreamResponse:
        """A file the report's manifest names, from that report's directory; nothing else."""
        source = self._source_now()
        directory = source.report_directory(bucket, calibration) if BUCKET_KEY.match(bucket) else None
        manifest = await asyncio.to_thread(source.manifest, bucket, calibration) if directory is not None else None
        if directory is None or manifest is None or name not in manifest.file_names():
            return _not_found("no such report file")
        path = directory / name
        if not path.is_file():
            return _not_found("report file missing on disk (the report is being rewritten?)")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {"Cache-Control": FILE_CACHE, "Content-Type": content_type, "X-Content-Type-Options": "nosniff"}
        if content_type == "application/pdf":
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return web.FileResponse(path, headers=headers)

    async def static_file(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        if name not in {"review.css", "review.js"}:
            return _not_found("no such file")
        return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": STATIC_CACHE, "X-Content-Type-Options": "nosniff"})

    async def me(self, request: web.BaseRequest, principal: Principal) -> web.Response:
        account = await asyncio.to_thread(self.state.accounts.lookup_dn, principal.dn)
        view = access.me_view(self.state.policy, principal, account)
        return self._page(request, principal, "me.html", {"me": view})

    async def admin_accounts(self, request: web.BaseRequest, principal: Principal) -> web.Response:
        store = self.state.accounts.store
        accounts, status = await asyncio.to_thread(lambda: (store.accounts(), store.status()))
        view = access.accounts_view(accounts, status, self.state.accounts.policy, datetime.now(UTC))
        return self._page(request, principal, "admin_accounts.html", {"a": view})

    async def admin_audit(self, request: web.BaseRequest, principal: Principal) -> web.Response:
        if self.audit_store is None:
            raise UpstreamError("no platform database for the audit log")
        try:
            query = AuditQuery.from_query(dict(request.rel_url.query))
        except ValueError as bad:
            raise BadRequestError(f"audit query: {bad}", reason=str(bad)) from None
        if self._audit_handler is not None:
            self._audit_handler.flush()  # the page shows the lines up to this request
        rows, total = await asyncio.to_thread(self.audit_store.query, query)
        return self._page(request, principal, "admin_audit.html", {"rows": rows, "q": query, "total": total})

    # -- the proxy's decision on the review launches ---------------------------------------------------

    async def _decision(self, app: ProxyApp, principal: Principal, params: dict[str, Any]) -> Any:
        """What the proxy would answer to this launch, by the path /graphql takes (ProxyApp._decide)."""
        body = actions.launch_request(params)
        graphql_request = GraphQLRequest(body["query"], copy.deepcopy(body["variables"]), body["operationName"])
        try:
            _, decisions, _ = await app._decide(principal, [graphql_request], True, "POST application/json")
        except (ForbiddenError, BadRequestError, UpstreamError) as error:
            return access.refused(error.reason, error.message)
        return decisions[0]

    async def _upstream(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The proxy's own read of the webserver (as UpstreamFacts does)."""
        session = self.state.session
        if session is None:
            raise UpstreamError("the proxy's upstream client is not started")
        url = self.state.upstream_base + self.state.config.path_prefix + "/graphql"
        try:
            async with session.post(url, json={"query": query, "variables": variables or {}},
                                    headers={"Accept-Encoding": "identity"}) as response:
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            raise UpstreamError(f"asking the webserver at {url} failed: {error!r}") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise UpstreamError(f"webserver answered {str(body)[:300]} to the review pages' query")
        return body["data"]

    async def _repository_now(self) -> actions.Repository | None:
        fetched, repository = self._repository
        if time.monotonic() - fetched < REPOSITORY_TTL_S and repository is not None:
            return repository
        try:
            repository = actions.repository_of(await self._upstream(actions.REPOSITORIES_QUERY))
        except UpstreamError as error:
            log.warning("review pages: cannot read the code location: %s", error)
            return None
        self._repository = (time.monotonic(), repository)
        return repository

    async def _review_runs(self, bucket: str, run_id: str) -> tuple[list[actions.LaunchedRun], actions.LaunchedRun | None]:
        """Sign-off and reject runs launched for ``bucket`` (newest first) and the one asked for."""
        try:
            data = await self._upstream(actions.RUNS_QUERY, {"filter": {"tags": [{"key": actions.BUCKET_TAG, "value": bucket}]}, "limit": 10})
            runs = [actions.launched_run(r) for r in (data.get("runsOrError") or {}).get("results") or []]
            current = None
            if run_id:
                data = await self._upstream(actions.RUN_QUERY, {"runId": run_id})
                run = data.get("runOrError") or {}
                if run.get("__typename") == "Run":
                    events = (data.get("logsForRun") or {}).get("events") or []
                    current = actions.launched_run(run, [e for e in events if e.get("__typename") in ("ExecutionStepFailureEvent", "RunFailureEvent")])
        except UpstreamError as error:
            log.warning("review pages: cannot read runs of %s: %s", bucket, error)
            return [], None
        return runs, current

    # -- the review actions' anti-forgery check on /graphql ---------------------------------------------

    def check_graphql_post(self, request: web.BaseRequest, principal: Principal) -> None:
        """Before the proxy decides a POST to /graphql: refuse cross-site posts, and check a review
        action's session token and single-use nonce (ForbiddenError, audited by the proxy)."""
        if request.method != "POST":
            return
        why = cross_site(request.headers, request.host)
        if why is not None:
            raise ForbiddenError(f"cross-site POST to /graphql refused: {why}", reason="cross-origin request refused")
        if NONCE_HEADER not in request.headers and TOKEN_HEADER not in request.headers:
            return  # the Dagster UI's own requests: same origin, decided by the role check alone
        try:
            same_origin(request.headers, request.host, request.scheme)
            self.guard.check(session=request.cookies.get(SESSION_COOKIE), user=principal.dn, token=request.headers.get(TOKEN_HEADER),
                             nonce=request.headers.get(NONCE_HEADER))
        except ActionRefused as refused:
            raise ForbiddenError(f"review action refused: {refused.detail}", reason=refused.reason) from None


def review_base_url() -> str | None:
    """The configured public URL of these pages (for links written elsewhere)."""
    return web_base_url()

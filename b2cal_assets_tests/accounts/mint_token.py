"""Mint DiracX credentials with the test server's own signing keys.

Runs under the DiracX server venv (.venv-diracx), never the main venv: diracx-logic, which
holds the signing code, is a test-only dependency. Usage:

    python mint_token.py JWKS_PATH ISSUER CREDENTIALS_PATH [--lifetime-seconds N]

Writes the credentials file in the format diracx-client reads (access_token,
refresh_token, expires_on) and prints nothing secret.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.fernet import Fernet
from diracx.core.models import AccessTokenPayload, RefreshTokenPayload, TokenResponse
from diracx.core.settings import AuthSettings
from diracx.core.utils import write_credentials
from diracx.logic.auth.token import create_token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jwks_path", type=Path)
    parser.add_argument("issuer")
    parser.add_argument("credentials_path", type=Path)
    parser.add_argument("--lifetime-seconds", type=int, default=24 * 3600)
    parser.add_argument("--refresh-lifetime-seconds", type=int, default=None)
    parser.add_argument(
        "--register-refresh-in",
        metavar="AUTHDB_URL",
        help="record the refresh token in the server's auth database, as a login would, so a refresh succeeds",
    )
    parser.add_argument("--sub", default="belle:b2cal-sync")
    parser.add_argument("--username", default="b2cal-sync")
    args = parser.parse_args()

    settings = AuthSettings(
        token_issuer=args.issuer,
        token_keystore=f"file://{args.jwks_path.resolve()}",
        state_key=Fernet.generate_key().decode(),
        allowed_redirects=[],
    )
    expires = datetime.now(tz=timezone.utc) + timedelta(seconds=args.lifetime_seconds)
    access = AccessTokenPayload(
        sub=args.sub,
        vo="belle",
        iss=args.issuer,
        dirac_group="belle",
        dirac_properties=["NormalUser"],
        preferred_username=args.username,
        jti=str(uuid.uuid4()),
        exp=expires,
        dirac_policies={},
    )
    refresh_lifetime = args.refresh_lifetime_seconds or args.lifetime_seconds
    refresh_jti = str(uuid.uuid4())
    if args.register_refresh_in:
        asyncio.run(_register_refresh(args.register_refresh_in, refresh_jti, args.sub))
    refresh = RefreshTokenPayload(
        sub=args.sub,
        jti=refresh_jti,
        exp=datetime.now(tz=timezone.utc) + timedelta(seconds=refresh_lifetime),
        dirac_policies={},
        legacy_exchange=False,
    )
    response = TokenResponse(
        access_token=create_token(access, settings),
        expires_in=args.lifetime_seconds,
        refresh_token=create_token(refresh, settings),
    )
    args.credentials_path.parent.mkdir(parents=True, exist_ok=True)
    write_credentials(response, location=args.credentials_path)


async def _register_refresh(authdb_url: str, jti: str, sub: str) -> None:
    from diracx.db.sql import AuthDB

    db = AuthDB(authdb_url)
    async with db.engine_context():
        async with db:
            await db.insert_refresh_token(jti, sub, "vo:belle group:belle")


if __name__ == "__main__":
    main()

"""A local OIDC issuer standing in for GitHub Actions: for the demo and the tests, never AWS.

It speaks the parts of the protocol a relying party uses: the discovery document at
`/.well-known/openid-configuration`, the signing keys (JWKS) at `/.well-known/jwks`, and
GitHub's token endpoint (`GET /token?audience=…` with the job's bearer request token, answered
`{"value": "<jwt>"}`). Beyond GitHub, for stories and tests: `POST /sandbox/token` mints a token
with the claims posted (a job on another branch, an expired token…), and
`POST /sandbox/rotate` replaces the signing key, as an issuer rotating its keys does;
`GET /sandbox/stats` says how many times its keys were fetched.

    python -m iamgate.sandbox.oidc_issuer --port 0 --ready-file F

It listens on 127.0.0.1 only and writes its URL to the ready file once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

# The claims of a GitHub Actions job token for a push to main (GitHub's documentation,
# "About security hardening with OpenID Connect"), for a job of the demo's CI repository.
GITHUB_JOB_CLAIMS: dict[str, Any] = {
    "sub": "repo:acme/infra:ref:refs/heads/main",
    "repository": "acme/infra",
    "repository_id": "690123456",
    "repository_owner": "acme",
    "repository_owner_id": "12345678",
    "ref": "refs/heads/main",
    "ref_type": "branch",
    "sha": "2b5c7a4e0f1d3c9b8a7f6e5d4c3b2a1908f7e6d5",
    "workflow": "deploy",
    "workflow_ref": "acme/infra/.github/workflows/deploy.yml@refs/heads/main",
    "job_workflow_ref": "acme/infra/.github/workflows/deploy.yml@refs/heads/main",
    "event_name": "push",
    "actor": "dana",
    "actor_id": "4242",
    "run_id": "9876543210",
    "run_number": "42",
    "run_attempt": "1",
    "runner_environment": "github-hosted",
}


@dataclass
class Issuer:
    url: str = ""
    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    keys: list[tuple[str, rsa.RSAPrivateKey]] = field(default_factory=list)
    lifetime: int = 300
    jwks_fetches: int = 0

    def rotate(self) -> str:
        kid = secrets.token_hex(8)
        self.keys = [(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))]
        return kid

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())),
                    "kid": kid,
                    "use": "sig",
                    "alg": "RS256",
                }
                for kid, key in self.keys
            ]
        }

    def mint(self, audience: str, claims: dict[str, Any]) -> str:
        kid, key = self.keys[-1]
        now = int(time.time())
        payload = {
            **GITHUB_JOB_CLAIMS,
            "iss": self.url,
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.lifetime,
            "jti": secrets.token_hex(16),
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def issuer_app(issuer: Issuer) -> web.Application:
    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": issuer.url,
                "jwks_uri": f"{issuer.url}/.well-known/jwks",
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": sorted({"iss", "aud", "exp", "iat", *GITHUB_JOB_CLAIMS}),
                "scopes_supported": ["openid"],
            }
        )

    async def jwks(_: web.Request) -> web.Response:
        issuer.jwks_fetches += 1
        return web.json_response(issuer.jwks())

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"jwks_fetches": issuer.jwks_fetches})

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {issuer.request_token}":
            return web.json_response({"message": "Bad credentials"}, status=401)
        audience = request.query.get("audience", issuer.url)
        return web.json_response({"value": issuer.mint(audience, {})})

    async def sandbox_token(request: web.Request) -> web.Response:
        asked = await request.json()
        audience = str(asked.pop("aud", issuer.url))
        return web.json_response({"value": issuer.mint(audience, asked)})

    async def rotate(_: web.Request) -> web.Response:
        return web.json_response({"kid": issuer.rotate()})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/.well-known/jwks", jwks)
    app.router.add_get("/token", token)
    app.router.add_post("/sandbox/token", sandbox_token)
    app.router.add_post("/sandbox/rotate", rotate)
    app.router.add_get("/sandbox/stats", stats)
    return app


async def serve(port: int, ready_file: Path | None) -> None:
    issuer = Issuer()
    issuer.rotate()
    runner = web.AppRunner(issuer_app(issuer), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    issuer.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if ready_file is not None:
        ready = json.dumps({"url": issuer.url, "request_token": issuer.request_token})
        await asyncio.to_thread(ready_file.write_text, ready)
    print(f"OIDC issuer on {issuer.url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.ready_file))


if __name__ == "__main__":
    main()

"""Administration through a gateway's JSON API, as the administrator logged in here.

`iamgate users …`, `iamgate sessions …` and `iamgate audit search` without `--config` call
the gateway of `iamgate login` with its login session; the gateway runs the same use cases
(`control/users.py`, `audit/search.py`) as the commands do on the gateway host.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import click

from iamgate.cli.people import _call, _session


@dataclass(frozen=True)
class Remote:
    """The gateway this machine is logged in to, and who is logged in."""

    url: str
    token: str
    user: str
    administer: bool

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return _call(self.url, path, body, self.token, method)

    def not_administrator(self) -> str:
        return (
            f"{self.user} is not an administrator of {self.url}: that needs a gateway role "
            "with `administer: true` (or, on the gateway host, --config)"
        )


def logged_in() -> Remote:
    """The login session of this machine, as the gateway sees it now (`GET /api/v1/me`)."""
    try:
        session = _session()
    except click.ClickException as exc:
        raise click.ClickException(
            f"{exc.message} as an administrator, or give --config on the gateway host"
        ) from None
    me = _call(session["url"], "/api/v1/me", None, session["token"])
    return Remote(session["url"], session["token"], str(me["user"]), bool(me["administer"]))


def administrator() -> Remote:
    """As `logged_in`, refused in people's words unless the user administers the gateway."""
    remote = logged_in()
    if not remote.administer:
        raise click.ClickException(remote.not_administrator())
    return remote


def path_part(value: str) -> str:
    return urllib.parse.quote(value, safe="")

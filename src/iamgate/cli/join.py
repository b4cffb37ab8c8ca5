"""`iamgate bots token` and `iamgate join`: a machine with no OIDC becomes its bot.

An administrator makes a one-time join token for a bot, on the gateway host (`--config`)
or through the gateway they are logged in to; the machine redeems it once with
`iamgate join URL --token …` and from then on holds the bot's session, as a person holds
their login: `iamgate credentials`, `env`, `aws` and `profiles sync` work as for a person.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from iamgate.cli.admin import administering, config_option
from iamgate.cli.people import (
    PLACEHOLDER_URL,
    _access,
    _call,
    _forget_credentials,
    _session,
    _write_private,
    home,
)
from iamgate.cli.remote import administrator, path_part
from iamgate.config import parse_duration
from iamgate.control.joins import Joins
from iamgate.identity.aws_join import BODY, CONTENT_TYPE, SERVER_ID_HEADER


@click.command(
    "token",
    epilog="""\b
Examples:
  iamgate bots token backup-server --ttl 30m --config gateway.yaml
  iamgate bots token backup-server          # as the administrator logged in
  # then, on the machine:  iamgate join https://iamgate.example.com --token igjoin1.…""",
)
@config_option
@click.argument("bot")
@click.option("--ttl", default="30m", show_default=True, help="Until it must be redeemed.")
def bots_token(config_path: Path | None, bot: str, ttl: str) -> None:
    """A one-time join token for BOT: a machine redeems it once for the bot's session.

    It is shown once, stored only hashed, and ends with its first use, its expiry or a
    revocation of the bot (`iamgate sessions revoke --user bot:NAME`)."""
    try:
        lifetime = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    if config_path is None:
        remote = administrator()
        made = remote.call(
            "POST",
            f"/api/v1/bots/{path_part(bot)}/join-tokens",
            {"ttl_seconds": int(lifetime.total_seconds())},
        )
        token, expires = str(made["token"]), str(made["expires_at"])
        url = remote.url
    else:
        with administering(config_path, changes=False) as (admin, me):
            joins = Joins(admin.config, admin.engine, admin.audit)
            made_here = joins.make_token(bot, lifetime, by=me)
            url = admin.config.server.url
        token = made_here.token
        expires = made_here.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    click.echo(token)
    click.echo(
        f"# one use, until {expires}; on the machine: iamgate join {url} --token TOKEN",
        err=True,
    )


@click.command(
    epilog=f"""\b
Examples:
  iamgate join {PLACEHOLDER_URL} --token igjoin1.…   # a token from `iamgate bots token`
  IAMGATE_JOIN_TOKEN=igjoin1.… iamgate join {PLACEHOLDER_URL}
  iamgate join {PLACEHOLDER_URL} --bot backup --aws  # a server in AWS, by its IAM role
  iamgate join --renew                              # daily, from cron: 30 days more""",
)
@click.argument("url", required=False)
@click.option(
    "--renew",
    is_flag=True,
    help="Renew this machine's session (30 days more, a new token) before it ends: "
    "from cron or a timer.",
)
@click.option(
    "--token",
    envvar="IAMGATE_JOIN_TOKEN",
    default=None,
    help="A one-time join token (or $IAMGATE_JOIN_TOKEN, which stays out of `ps`).",
)
@click.option("--bot", default=None, help="With --aws: the bot to join as.")
@click.option(
    "--aws",
    "by_aws",
    is_flag=True,
    help="Prove this machine's AWS IAM identity (its own credentials, e.g. an instance "
    "profile) with a signed sts:GetCallerIdentity that the gateway sends to STS.",
)
def join(url: str | None, renew: bool, token: str | None, bot: str | None, by_aws: bool) -> None:
    """This machine becomes its bot: the bot's session is kept under ~/.iamgate, as a
    person's login is, for `iamgate credentials`, `env`, `aws` and `profiles sync`."""
    if renew:
        held = _session()
        url = str(held["url"])
        reply = _call(url, "/api/v1/join/renew", {}, str(held["token"]))
        _write_private(home() / "session.json", {"url": url, **reply})
        click.echo(f"renewed the session of {reply['user']} at {url} until {reply['expires_at']}")
        return
    if url is None:
        raise click.UsageError(f"which gateway? e.g. `iamgate join {PLACEHOLDER_URL} --token …`")
    if by_aws:
        if not bot:
            raise click.UsageError("--aws needs --bot NAME: the bot this machine joins as")
        reply = _call(url, "/api/v1/join/aws", _signed_caller_identity(url, bot), None)
    else:
        if not token:
            raise click.UsageError(
                "give the join token: --token TOKEN (or $IAMGATE_JOIN_TOKEN), "
                "or join by AWS IAM with --bot NAME --aws"
            )
        reply = _call(url, "/api/v1/join", {"token": token}, None)
    _write_private(home() / "session.json", {"url": url, **reply})
    _write_private(home() / "remembered.json", {"url": url, "user": reply["user"]})
    _forget_credentials()
    click.echo(f"joined {url} as {reply['user']} until {reply['expires_at']}")
    with contextlib.suppress(click.ClickException):
        _access(_session())  # for completion and the picker


def _signed_caller_identity(url: str, bot: str) -> dict[str, Any]:
    """sts:GetCallerIdentity signed with this machine's own AWS credentials (botocore's
    chain: environment, profile, container or instance role...) for the STS endpoint the
    gateway sends it to, naming the gateway in a signed header. It is not sent to STS
    here: the gateway sends it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    target = _call(url, "/api/v1/join/aws", None, None)
    credentials = Session().get_credentials()
    if credentials is None:
        raise click.ClickException(
            "no AWS credentials on this machine to prove its IAM identity with "
            "(an instance profile, a task role, AWS_ACCESS_KEY_ID...)"
        )
    request = AWSRequest(
        method="POST",
        url=str(target["sts_endpoint"]).rstrip("/") + "/",
        data=BODY,
        headers={"Content-Type": CONTENT_TYPE, SERVER_ID_HEADER: str(target["server_id"])},
    )
    SigV4Auth(credentials.get_frozen_credentials(), "sts", str(target["region"])).add_auth(request)
    return {"bot": bot, "headers": dict(request.headers.items()), "body": BODY}

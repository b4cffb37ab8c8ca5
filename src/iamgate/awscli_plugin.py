"""An AWS CLI v1 plugin that keeps every service of an iamgate profile on the gateway.

CLI v1 pins sqs, emr, rds, docdb, neptune and health to fixed AWS hosts unless
`--endpoint-url` is given on the command line, ignoring `endpoint_url` in the profile. Those
calls would then go straight to AWS with gateway credentials and fail. This plugin runs
first and copies the profile's `endpoint_url` into the command line's, so the CLI's own
override sees it set and leaves it alone. Enabled by `iamgate profiles sync`, `iamgate env`
and the demo with:

    [plugins]
    iamgate = iamgate.awscli_plugin

The `aws` that reads that file must be able to import `iamgate`: the one installed beside it
(the venv's, which the demo's `source …/env.sh` puts first on PATH).
"""

from __future__ import annotations

from typing import Any


def fill_endpoint_url_from_profile(session: Any, parsed_globals: Any, **_: Any) -> None:
    if getattr(parsed_globals, "endpoint_url", None) is not None:
        return
    try:
        scoped = session.get_scoped_config()
    except Exception:  # an unknown profile: let the CLI report it its own way
        return
    endpoint_url = scoped.get("endpoint_url")
    if endpoint_url:
        parsed_globals.endpoint_url = endpoint_url


def awscli_initialize(cli: Any) -> None:
    cli.register_first("before-building-argument-table-parser", fill_endpoint_url_from_profile)

"""Where a call goes upstream: only AWS's own endpoint data or the configured override.

Nothing the client sent (Host header, URL, a queue URL) ever chooses the destination: the
signing service and region of the verified credential scope pick the endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.loaders import create_loader
from botocore.regions import EndpointResolver

from iamgate.refusals import Reason, Refused

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class Upstream:
    base_url: str  # scheme://host[:port], no path
    signing_region: str
    bucket_in_host: bool = False  # S3 virtual-hosted: the bucket is already in base_url


@lru_cache(maxsize=1)
def _resolver() -> EndpointResolver:
    return EndpointResolver(create_loader().load_data("endpoints"))


@lru_cache(maxsize=4096)
def _aws_endpoint(endpoint_prefix: str, region: str) -> tuple[str, str]:
    resolved: Any = _resolver().construct_endpoint(endpoint_prefix, region)
    if not resolved:
        raise Refused(
            Reason.UNKNOWN_OPERATION,
            f"iamgate knows no endpoint for {endpoint_prefix} in {region}",
        )
    signing_region = resolved.get("credentialScope", {}).get("region", region)
    return f"https://{resolved['hostname']}", signing_region


def resolve_upstream(
    endpoint_prefix: str, region: str, *, override: str | None, bucket: str | None = None
) -> Upstream:
    if not _REGION.match(region):
        raise Refused(Reason.MALFORMED_SCOPE, f"'{region}' is not a valid AWS region")
    if override:
        return Upstream(override, region)
    base, signing_region = _aws_endpoint(endpoint_prefix, region)
    if endpoint_prefix == "s3" and bucket and _DNS_BUCKET.match(bucket) and ".." not in bucket:
        return Upstream(base.replace("https://", f"https://{bucket}.", 1), signing_region, True)
    return Upstream(base, signing_region)

"""Queue URLs that name a configured upstream (the sandbox's moto), made to name the gateway.

SQS answers CreateQueue, GetQueueUrl and ListQueues with queue URLs. AWS names its own host
in them, which a client reaches through its endpoint_url (the gateway) anyway. moto builds
them from the Host its request reached: the gateway's connection to it, so they name moto's
127.0.0.1 port, and a client or script that used such a URL as an address would bypass the
gateway. moto has no setting for it, and sending moto another Host than the one signed for
would let that Host reach moto's S3 virtual-host parsing (another bucket than the one
authorized); so the gateway rewrites the answer instead, as narrowly as it can:

- only with a configured upstream endpoint (`aws.upstream.endpoint_url`, the sandbox): an
  answer from AWS itself is never touched;
- only successful answers of the SQS operations that return queue URLs (never a message,
  whose body and MD5 must stay as sent), uncompressed, of a declared length up to
  MAX_REWRITTEN;
- only the upstream's own base URL followed by `/` (`http://127.0.0.1:5000/`), replaced by
  the gateway's configured public URL, never by anything the client sent.

Error bodies, headers and every other answer cross byte for byte. The rewrite only changes
what the client is told; where the gateway sends a request is never read from a request, so
a queue URL naming any host still reaches only the configured upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_REWRITTEN = 1024 * 1024
# (service, operation) whose answers carry queue URLs built by the upstream.
_NAMING = frozenset(
    ("sqs", op) for op in ("CreateQueue", "GetQueueUrl", "ListQueues", "ListDeadLetterSourceQueues")
)


@dataclass(frozen=True, slots=True)
class UpstreamUrls:
    """The configured upstream's base URL and the gateway's, as bytes in answers."""

    upstream: bytes
    public: bytes

    @classmethod
    def for_upstream(cls, endpoint_url: str | None, public_url: str) -> UpstreamUrls | None:
        """None without a configured upstream endpoint: AWS's answers stay as they are."""
        if not endpoint_url:
            return None
        upstream = endpoint_url.rstrip("/") + "/"
        public = public_url.rstrip("/") + "/"
        if upstream == public:
            return None
        return cls(upstream.encode(), public.encode())

    def applies(
        self,
        service: str,
        operation: str,
        status: int,
        headers: Mapping[str, str],
        length: str | None,
    ) -> bool:
        """Whether this answer is one whose queue URLs are rewritten."""
        if (service, operation) not in _NAMING or not 200 <= status < 300:
            return False
        if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            return False
        return length is not None and length.isdigit() and int(length) <= MAX_REWRITTEN

    def rewrite(self, body: bytes) -> bytes:
        return body.replace(self.upstream, self.public)

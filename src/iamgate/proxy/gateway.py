"""The request pipeline: authenticate, identify, authorize, upstream credentials, forward,
audit (the README's six steps; `_process` runs them, numbered as there).

Each AWS API call runs the six steps of the design in order, and any step may refuse with an
AWS-shaped error. Everything that decides is pure code elsewhere (`sigv4`, `identity`,
`aws.operations`, `access`, the call's audit record in `audit.aws_calls`); this module only
moves bytes between the client, those decisions and the upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from iamgate.access.decisions import Decision, Reach, decide_among
from iamgate.access.requests import Call, Person, decide_granted, hint_for
from iamgate.access.session_policy import SessionPolicyError, session_policy_for
from iamgate.audit.aws_calls import CallRecord
from iamgate.audit.writer import AuditLog, DurableRecord
from iamgate.aws.endpoints import resolve_upstream
from iamgate.aws.errors import error_code_for, render_error
from iamgate.aws.operations import Identified, OperationIndex
from iamgate.aws.post_form import is_form_upload, parse_post_form
from iamgate.aws.post_upload import (
    encode_form,
    forwarded_fields,
    identification_headers,
    upstream_fields,
)
from iamgate.aws.upstream_credentials import (
    AwsCredentials,
    RoleKey,
    UpstreamCredentialCache,
    role_key,
)
from iamgate.config import (
    BotConfig,
    Config,
    Configured,
    LiveConfig,
    RoleConfig,
    ServerConfig,
    live,
)
from iamgate.identity.bots import (
    bot_name,
    still_bound,
)
from iamgate.identity.credentials import Claims, KeyRing, open_credentials
from iamgate.proxy.body import BodyStream, read_within
from iamgate.proxy.limits import Admission, CallLimits
from iamgate.proxy.outbound import (
    HOP_BY_HOP,
    PRESIGN_PARAMS,
    RPC_PROTOCOLS,
    canonical_path,
    canonical_query,
    forwarded_headers,
    forwarded_query,
    rebuilt_rpc,
    refuse_repeated,
    sign_upstream,
)
from iamgate.proxy.upstream_urls import UpstreamUrls
from iamgate.proxy.web_identity import EXCHANGE, WebIdentityExchange
from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import (
    Authorization,
    ChunkedDecoder,
    Verified,
    check_payload_sha256,
    is_sha256_hex,
    is_streaming,
    parse_authorization,
    payload_hash_for,
    verify_signature,
)
from iamgate.sigv4.post_policy import (
    check_policy,
    object_key,
    post_authorization,
    read_policy,
    verify_post_signature,
)
from iamgate.sigv4.sigv2 import NOT_FORWARDED as SIGV2_PARAMS
from iamgate.sigv4.sigv2 import QueryV2, is_presigned_v2, parse_query_v2, verify_query_v2
from iamgate.store.directory import Directory
from iamgate.store.requests import Grants

log = logging.getLogger(__name__)

S3_FAMILY = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})
MAX_BUFFERED_BODY = 64 * 1024 * 1024
# Bodies above this are streamed (S3 only); below it they are read, checked and then sent.
STREAM_THRESHOLD = 1024 * 1024
MAX_ERROR_BODY = 256 * 1024
SMALL_ANSWER = 64 * 1024  # an answer of a declared length up to this is sent in one write
_SANDBOX_CONTROL = ("moto-api", "latest/")
# An unsigned request's body is read for its shape up to this size, never more.
UNSIGNED_PEEK = 16 * 1024
_WEB_IDENTITY = frozenset({"sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML"})
TIME = "%Y-%m-%dT%H:%M:%SZ"
# By design: an unsigned request has no principal to authorize or attribute, so it is never
# forwarded, even to a public-read object S3 itself would serve anonymously.
ANONYMOUS_S3 = (
    "iamgate requires signed requests: it forwards no anonymous S3 request, public-read "
    "objects included; sign with credentials from `iamgate login`"
)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_ERROR_CODE_XML = re.compile(rb"<Code>([^<]{1,128})</Code>")
_ERROR_CODE_JSON = re.compile(rb'"(?:__type|code)"\s*:\s*"([^"]{1,256})"')


class _StoppedReading(Exception):
    """The client stopped reading its answer."""


@dataclass(slots=True)
class _Authenticated:
    """Whose request it is, and the request as it was signed."""

    auth: Authorization
    claims: Claims
    secret: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    verified: Verified | None = None
    sigv2: QueryV2 | None = None  # an S3 URL presigned with Signature Version 2

    @property
    def presigning(self) -> frozenset[str]:
        """The query parameters that authenticate, and never cross."""
        return SIGV2_PARAMS if self.sigv2 is not None else PRESIGN_PARAMS


@dataclass(slots=True)
class _Inbound:
    """The request as it will cross: the only parts identification reads."""

    body: bytes | None = None
    stream: BodyStream | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # signed or harmless
    query: list[tuple[str, str]] = field(default_factory=list)  # presigning removed
    view: dict[str, str] = field(default_factory=dict)  # headers as identification read them
    virtual_bucket: str | None = None


@dataclass(frozen=True, slots=True)
class _Outbound:
    """The upstream request: unsigned until the call is allowed, then signed."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None  # None: the inbound stream follows
    payload_hash: str | None
    signing_name: str
    region: str


# What the `Expect: 100-continue` step hands on to the request's handling.
_AUTHN = web.RequestKey("iamgate.authn", _Authenticated)
_CALL = web.RequestKey("iamgate.call", CallRecord)


class Gateway(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        keyring: KeyRing,
        index: OperationIndex,
        upstream_credentials: UpstreamCredentialCache,
        audit: AuditLog,
        directory: Directory,
        *,
        clock: Callable[[], datetime] | None = None,
        session: aiohttp.ClientSession | None = None,
        grants: Grants | None = None,
        record_issue: Callable[[Claims], None] | None = None,
    ) -> None:
        """`session` is the HTTP client the upstream is reached with; by default the gateway
        opens (and closes) its own, pooled and bounded by the `server:` settings. `grants`:
        the approved access requests, followed like the directory (none: no requests).
        `record_issue` stores a credential the gateway issues itself (a web identity
        exchange), blocking: so that `audit search --key` finds whose it is."""
        self.live = live(config)
        self.keyring = keyring
        self.index = index
        self.upstream_credentials = upstream_credentials
        self.audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))
        self._session = session
        self._owns_session = session is None
        self._reach_memory: tuple[Mapping[str, RoleConfig], Reach] | None = None
        # The requestable roles in force, by name, and which of them reach an (account, IAM
        # role): a refusal looks among those for its hint.
        self._requestable_memory: tuple[Mapping[str, RoleConfig], tuple[str, ...], Reach] | None
        self._requestable_memory = None
        self._refresher: asyncio.Task[None] | None = None
        self._preload: asyncio.Future[None] | None = None
        public = urlsplit(self.config.server.url)
        self._public_host = (public.netloc or "").lower()
        self._override = self.config.aws.upstream.endpoint_url  # fixed for the process
        self._urls = UpstreamUrls.for_upstream(self._override, self.config.server.url)
        self.directory = directory
        self.directory_as_of: datetime | None = None  # see refresh_directory
        self.grants = grants
        server = self.config.server  # fixed for the process, like the upstream
        self.limits = CallLimits(
            calls_per_principal=server.max_calls_per_principal,
            unauthenticated_per_address=server.max_unauthenticated_per_address,
            unverified_bytes=server.max_unverified_body_bytes,
        )
        self._body_timeout = server.body_timeout.total_seconds()
        self.web_identity = WebIdentityExchange(
            self.live,
            keyring,
            audit,
            roles=lambda: self.roles,
            bot=self._bot,
            clock=self._clock,
            record_forwarding=self._record_forwarding,
            record_issue=record_issue,
        )

    def _open(self, auth: Authorization, call: CallRecord) -> tuple[Claims, str]:
        claims, secret = open_credentials(
            self.keyring, auth.scope.access_key_id, auth.session_token, now=self._clock()
        )
        call.claims = claims
        if self.directory.revoked(claims) or not self._exists(claims):
            raise Refused(
                Reason.REVOKED_CREDENTIAL,
                "The security token included in the request is invalid: iamgate revoked it",
            )
        unbound = still_bound(self.config, claims, self._bot)
        if unbound is not None:
            raise Refused(
                Reason.REVOKED_CREDENTIAL,
                f"The security token included in the request is invalid: {unbound}",
            )
        return claims, secret

    def _refresh(self) -> None:
        began = datetime.now(UTC)
        self.directory.refresh()
        if self.grants is not None:
            self.grants.refresh()
        self.directory_as_of = began

    async def refresh_directory(self) -> None:
        """Read users, revocations and grants now; `directory_as_of` is then when this read
        began: every change committed before it is in force here."""
        await asyncio.to_thread(self._refresh)

    def _bot(self, name: str) -> BotConfig | None:
        """The bot `name` now: the configuration's, else the one stored (`iamgate bots
        add`), as this replica last read the store; None when neither has it."""
        configured = self.config.bot_named(name)
        if configured is not None:
            return configured
        roles = self.directory.bot_roles(name)
        if roles is None:
            return None
        return BotConfig.model_construct(name=name, roles=list(roles), description="")

    def _exists(self, claims: Claims) -> bool:
        """A bot is the configuration's or the store's; a user the store's."""
        name = bot_name(claims.principal)
        if name is not None:
            return self._bot(name) is not None
        return self.directory.exists(claims.principal)

    def _held_roles(self, principal: str) -> tuple[str, ...]:
        """The gateway roles a principal holds now (a bot's as `_bot` finds it)."""
        name = bot_name(principal)
        if name is not None:
            bot = self._bot(name)
            return tuple(bot.roles) if bot is not None else ()
        return self.directory.roles_of(principal)

    async def start(self) -> None:
        await self.refresh_directory()
        # Compile every service model off the loop, so no request waits for one.
        self._preload = asyncio.get_running_loop().run_in_executor(None, self.index.preload)
        self._refresher = asyncio.create_task(self._follow_directory())
        if self._session is None:
            self._session = upstream_session(self.config.server)

    @property
    def ready(self) -> bool:
        """Started, with every service model compiled: calls meet no compilation pauses."""
        return self._preload is not None and self._preload.done()

    async def _follow_directory(self) -> None:
        """Revocations and role changes made on any replica apply here within a poll."""
        while True:
            await asyncio.sleep(self.config.server.directory_poll.total_seconds())
            try:
                await self.refresh_directory()
            except Exception:
                log.exception("could not refresh users and revocations")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.web_identity.close()
        if self._session is not None and self._owns_session:
            await self._session.close()

    # -- aiohttp entry points -------------------------------------------------------------

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """Answer `100 Continue` only once the caller's signature is known to be good, and
        the caller has room for another call (it is taken for real in `handle`)."""
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="Unknown Expect header")
        call = self._new_call(request)
        if _is_post_upload(request):  # its signature is in the body it is about to send
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            request[_CALL] = call
            return None
        admission = self.limits.admit(call.source_ip)
        try:
            request[_AUTHN] = authn = self._authenticate_head(request, call)
            _admit(admission, authn)
        except Refused as refused:
            if refused.reason is Reason.MISSING_AUTH:
                refused = self._read_unsigned(request, call, refused, None)
            response = self._refuse(request, call, refused)
            self._audit(call)
            return response
        finally:
            admission.release()
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        request[_CALL] = call
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call: CallRecord = request.get(_CALL) or self._new_call(request)
        admission = self.limits.admit(call.source_ip)
        try:
            return await self._process(request, call, admission)
        except Refused as refused:
            if call.auth is None and call.identified is None:
                # No credential scope names the service: the request's shape does, so the
                # refusal is in the protocol its SDK parses (a CBOR client gets CBOR).
                body = await _small_body(request, self._body_timeout)
                refused = self._read_unsigned(request, call, refused, body)
                if self.web_identity.answers(call, refused):
                    return await self._web_identity(request, call)
            return self._refuse(request, call, refused)
        except aiohttp.ConnectionTimeoutError:
            log.warning("no upstream connection in time for %s", call.request_id)
            return self._refuse(
                request,
                call,
                Refused(
                    Reason.UPSTREAM_UNAVAILABLE,
                    "iamgate: no connection to the AWS endpoint came free in time; retry",
                ),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream failed for %s: %s", call.request_id, type(exc).__name__)
            return self._refuse(
                request,
                call,
                Refused(Reason.UPSTREAM_UNAVAILABLE, "iamgate could not reach the AWS endpoint"),
            )
        except Exception:
            # A fault of ours, whatever the input: the caller gets an AWS-shaped 500 and the
            # audit trail the call, never a bare error page or a lost record.
            log.exception("internal error handling %s", call.request_id)
            if call.status:  # the upstream's answer had begun: nothing more can be sent
                raise
            return self._refuse(
                request,
                call,
                Refused(Reason.INTERNAL, "iamgate: an internal error ended this call; retry"),
            )
        finally:
            admission.release()  # on every path: answered, refused, disconnected, failed
            self._audit(call)

    # -- the pipeline ---------------------------------------------------------------------

    async def _process(
        self, request: web.Request, call: CallRecord, admission: Admission
    ) -> web.StreamResponse:
        if _is_post_upload(request):
            return await self._post_upload(request, call, admission)
        authn, inbound = await self._authenticate(request, call, admission)  # 1
        identified = self._identify(request, call, authn, inbound)  # 2
        outbound = self._outbound(request, authn, inbound, identified)
        grant = self._authorize(call, authn.claims, identified)  # 3, on `outbound` as built
        # 6. audit: the record leaves for the writer now, and the upstream request is signed
        # while it is committed; nothing is forwarded before it is durable (fail closed).
        record = self._record_forwarding(call)
        try:
            creds = await self.upstream_credentials.get(grant)  # 4
            signed = self._sign(outbound, creds)
        except BaseException:
            record.abandon()
            raise
        await record
        return await self._forward(request, call, signed, inbound.stream)  # 5

    # 1. authenticate: the signature, over exactly the bytes we will forward.

    def _authenticate_head(self, request: web.Request, call: CallRecord) -> _Authenticated:
        """What the request head proves: whose credential it is, and, when the payload hash
        is declared in a header, the signature itself (so `100 Continue` is earned)."""
        raw_path, raw_query = _origin_form(request)
        headers = _header_pairs(request)
        sigv2 = None
        if is_presigned_v2(raw_query, headers):
            sigv2 = parse_query_v2(request.method, raw_query, headers)
            auth = sigv2.authorization()
        else:
            auth = parse_authorization(request.method, raw_path, raw_query, headers)
        call.auth = auth
        claims, secret = self._open(auth, call)
        authn = _Authenticated(auth, claims, secret, raw_path, raw_query, headers, sigv2=sigv2)
        s3 = auth.scope.service in S3_FAMILY
        content_sha = auth.content_sha256
        if not s3 and content_sha is not None and not is_sha256_hex(content_sha):
            raise Refused(
                Reason.BODY_HASH_MISMATCH,
                "iamgate: outside S3 the body is always signed; x-amz-content-sha256 may "
                f"only be the body's SHA-256, not {content_sha[:40]}",
            )
        if sigv2 is not None or (content_sha is not None and (s3 or is_sha256_hex(content_sha))):
            authn.verified = self._verify(request, authn, payload_hash_for(auth, None))
        return authn

    def _verify(self, request: web.Request, authn: _Authenticated, payload_hash: str) -> Verified:
        if authn.sigv2 is not None:
            return verify_query_v2(
                authn.sigv2,
                request.method,
                authn.raw_path,
                authn.secret,
                virtual_bucket=self._virtual_bucket(request.host),
                now=self._clock(),
            )
        return verify_signature(
            authn.auth,
            request.method,
            authn.raw_path,
            authn.raw_query,
            authn.headers,
            authn.secret,
            payload_hash,
            now=self._clock(),
        )

    async def _authenticate(
        self, request: web.Request, call: CallRecord, admission: Admission
    ) -> tuple[_Authenticated, _Inbound]:
        """The head (already, if `Expect: 100-continue` asked first), then the body verified
        against the signature: read whole, or (large S3 uploads) checked as it streams, its
        last piece held back until it has verified. A body read before its signature can be
        checked counts against the sender's unverified bytes."""
        authn = request.get(_AUTHN) or self._authenticate_head(request, call)
        _admit(admission, authn)
        return authn, await self._authenticated_body(request, call, authn, admission)

    async def _authenticated_body(
        self, request: web.Request, call: CallRecord, authn: _Authenticated, admission: Admission
    ) -> _Inbound:
        auth = authn.auth
        content_sha = auth.content_sha256
        s3 = auth.scope.service in S3_FAMILY
        if s3 and (is_streaming(content_sha) or _too_big_to_buffer(request)):
            verified = authn.verified or self._verify(request, authn, payload_hash_for(auth, None))
            admission.authenticated(authn.claims.principal)
            stream = _body_stream(request, verified, content_sha)
            stream.idle = self._body_timeout
            return _Inbound(stream=stream)
        body = await _read_body(request, admission, self._body_timeout)
        call.bytes_in = len(body)
        if authn.verified is None:
            authn.verified = self._verify(request, authn, payload_hash_for(auth, body))
            admission.authenticated(authn.claims.principal)
        if content_sha is not None and is_sha256_hex(content_sha):
            check_payload_sha256(hashlib.sha256(body).hexdigest(), content_sha)
        return _Inbound(body=body)

    # 2. identify: the operation and its IAM action, from botocore's service models, read
    #    from exactly what will be forwarded.

    def _identify(
        self, request: web.Request, call: CallRecord, authn: _Authenticated, inbound: _Inbound
    ) -> Identified:
        auth = authn.auth
        signing_name = auth.scope.service
        inbound.headers = forwarded_headers(authn.headers, auth.signed_headers)
        refuse_repeated(inbound.headers)
        inbound.query = forwarded_query(authn.raw_query, authn.presigning)
        view = {name.lower(): value for name, value in inbound.headers}
        body = inbound.body
        s3 = signing_name in S3_FAMILY
        if body and not s3 and view.get("content-encoding", "").strip().lower() == "gzip":
            # What the upstream will decompress is what identification must read. (An S3
            # object's Content-Encoding is its metadata: S3 stores the bytes as they are.)
            body = _gunzip(body)
            del view["content-encoding"]
        if s3:
            inbound.virtual_bucket = self._virtual_bucket(request.host)
        identified = self.index.identify(
            signing_name,
            request.method,
            unquote(authn.raw_path),
            inbound.query,
            view,
            body,
            virtual_bucket=inbound.virtual_bucket,
            raw_path=authn.raw_path,
        )
        if identified is None:
            named = _named_operation(view, inbound.query)
            raise Refused(
                Reason.UNKNOWN_OPERATION,
                f"iamgate: this request{named} matches no {signing_name} operation it knows",
            )
        call.identified = identified
        inbound.view = view
        return identified

    # 3. authorize: the caller's current gateway roles, explicit deny first, default deny;
    #    and the session policy of the roles that reach the IAM role, so AWS enforces the
    #    same view.

    def _authorize(self, call: CallRecord, claims: Claims, identified: Identified) -> RoleKey:
        action = identified.operation.iam_action
        account = self.config.aws.account_by_id(claims.account_id)
        if account is None:
            raise Refused(
                Reason.UNKNOWN_ACCOUNT,
                f"iamgate: account {claims.account_id} is not configured on this gateway",
            )
        # The roles the principal holds now, not when the credential was minted.
        held = self._held_roles(claims.principal)
        reaching = self._reach().of(held, account, claims.aws_role)
        decision = decide_among(
            reaching,
            account,
            claims.aws_role,
            action,
            call.auth.scope.region if call.auth else "",
            identified.params,
            ambiguous=identified.ambiguous,
        )
        hint = ""
        if not decision.allowed and self.grants is not None:
            asked = Call(
                account,
                claims.aws_role,
                action,
                call.auth.scope.region if call.auth else "",
                identified.params,
                identified.ambiguous,
            )
            decision, reaching, hint = self._granted(decision, reaching, claims.principal, asked)
        call.gateway_role = decision.role
        call.rule = decision.rule
        if not decision.allowed:
            raise Refused(Reason.ACCESS_DENIED, f"iamgate: {decision.rule}{hint}")
        try:
            policy = session_policy_for(reaching, partition=account.partition)
        except SessionPolicyError as exc:
            raise Refused(Reason.ACCESS_DENIED, f"iamgate: {exc}") from None
        # 4. upstream credentials: AssumeRole into the account's role with that policy.
        return role_key(account, claims.aws_role, claims.principal, policy)

    def _granted(
        self,
        refused: Decision,
        reaching: tuple[RoleConfig, ...],
        principal: str,
        asked: Call,
    ) -> tuple[Decision, tuple[RoleConfig, ...], str]:
        """A call the held roles refuse, decided by the principal's approved access requests
        (held in memory, refreshed by polling; their windows checked against the clock);
        still refused, the requestable role that would allow it, in words to append."""
        assert self.grants is not None
        grants = self.grants.of(principal)
        granted = decide_granted(grants, self.roles, asked, self._clock()) if grants else None
        if granted is not None:
            return (*granted, "")
        held = frozenset(self._held_roles(principal))
        hint = hint_for(self._requestable(asked), Person(principal, held), asked)
        if hint is None:
            return refused, reaching, ""
        return refused, reaching, f"; role {hint.role} would allow it: {hint.command}"

    def _requestable(self, asked: Call) -> tuple[RoleConfig, ...]:
        """The requestable roles that reach the call's account and IAM role, found once per
        (account, IAM role) for the roles in force: refusals cost no scan of every role."""
        roles = self.roles
        if self._requestable_memory is None or self._requestable_memory[0] is not roles:
            names = tuple(name for name, r in roles.items() if r.requestable is not None)
            self._requestable_memory = (roles, names, Reach(roles))
        _, names, reach = self._requestable_memory
        return reach.of(names, asked.account, asked.aws_role)

    def _reach(self) -> Reach:
        """Which held roles reach an (account, IAM role), remembered for the roles in force:
        a reload brings a new set of roles and so a new, empty memory."""
        roles = self.roles
        if self._reach_memory is None or self._reach_memory[0] is not roles:
            self._reach_memory = (roles, Reach(roles))
        return self._reach_memory[1]

    # 5. forward: the upstream request is made from what identification read, before the
    #    decision, so the decision is on exactly what will be sent; it goes to the endpoint
    #    of (service, region), chosen by us alone, and is re-signed once allowed.

    def _outbound(
        self,
        request: web.Request,
        authn: _Authenticated,
        inbound: _Inbound,
        identified: Identified,
    ) -> _Outbound:
        auth = authn.auth
        s3 = auth.scope.service in S3_FAMILY
        operation = identified.operation
        raw_path = authn.raw_path
        bucket = inbound.virtual_bucket or (_first_segment(raw_path) if s3 else None)
        upstream = resolve_upstream(
            self.index.endpoint_prefix(operation.service),
            auth.scope.region,
            override=self._override,
            bucket=bucket,
        )
        body = inbound.body
        if operation.protocol in RPC_PROTOCOLS:
            method = "POST"
            path, headers, body = rebuilt_rpc(
                identified,
                raw_path,
                inbound.view,
                body,
                json_version=self.index.json_version(operation.service),
            )
            query = ""
        else:
            method = request.method
            path = canonical_path(raw_path)
            if inbound.virtual_bucket and not upstream.bucket_in_host:
                path = "/" + canonical_path(inbound.virtual_bucket) + path
            elif upstream.bucket_in_host and not inbound.virtual_bucket and bucket:
                path = path[len(canonical_path(bucket)) + 1 :] or "/"
            query = canonical_query(authn.raw_query, authn.presigning)
            headers = inbound.headers
        self._refuse_reserved(path)
        url = upstream.base_url + path + (f"?{query}" if query else "")
        _check_destination(url, upstream.base_url)
        stream = inbound.stream
        payload_hash: str | None
        if stream is not None:
            if stream.decoder is not None:
                declared = request.headers.get("x-amz-decoded-content-length")
                payload_hash = "UNSIGNED-PAYLOAD"
            else:
                declared = request.headers.get("Content-Length")
                payload_hash = stream.expected_sha256 or "UNSIGNED-PAYLOAD"
            if declared is not None:
                headers = [*headers, ("Content-Length", declared)]
            body = None
        else:
            payload_hash = hashlib.sha256(body or b"").hexdigest() if s3 else None
        return _Outbound(
            method, url, headers, body, payload_hash, auth.scope.service, upstream.signing_region
        )

    def _sign(self, outbound: _Outbound, creds: AwsCredentials) -> _Outbound:
        signed = sign_upstream(
            method=outbound.method,
            url=outbound.url,
            headers=outbound.headers,
            body=outbound.body,
            payload_hash=outbound.payload_hash,
            credentials=creds,
            signing_name=outbound.signing_name,
            region=outbound.region,
            s3=outbound.signing_name in S3_FAMILY,
        )
        return replace(outbound, headers=signed)

    # S3 POST-policy uploads (browser forms): the signed policy in the body stands for the
    # SigV4 signature, then the same identify, authorize, audit and forward as any call,
    # with a form of the gateway's own (sigv4/post_policy.py, aws/post_upload.py).

    async def _post_upload(
        self, request: web.Request, call: CallRecord, admission: Admission
    ) -> web.StreamResponse:
        bucket = self._post_bucket(request)
        if (request.content_length or 0) > MAX_BUFFERED_BODY:
            raise Refused(
                Reason.ENTITY_TOO_LARGE,
                f"iamgate: a form upload may be at most {MAX_BUFFERED_BODY // 2**20} MiB",
            )
        admission.unauthenticated()
        body = await _read_body(request, admission, self._body_timeout)
        call.bytes_in = len(body)
        sent_as = request.headers.get("Content-Type", "")
        form = await _off_the_loop_if_large(len(body), parse_post_form, body, sent_as)
        call.auth = auth = post_authorization(form)
        claims, secret = self._open(auth, call)
        verify_post_signature(auth, form, secret)
        policy = form.get("policy") or ""
        admission.authenticated(claims.principal)
        fields = forwarded_fields(form, object_key(form))
        identified = self._identify_post(call, bucket, fields)
        check_policy(read_policy(policy), form, bucket, now=self._clock())
        url, region = self._post_destination(bucket, auth.scope.region)
        grant = self._authorize(call, claims, identified)
        record = self._record_forwarding(call)
        try:
            creds = await self.upstream_credentials.get(grant)
            signed = upstream_fields(
                fields,
                bucket=bucket,
                size=len(form.file),
                credentials=creds,
                region=region,
                now=self._clock(),
            )
            form_body, content_type = await _off_the_loop_if_large(
                len(form.file), encode_form, signed, form
            )
        except BaseException:
            record.abandon()
            raise
        await record
        headers = [("Content-Type", content_type), *self._post_account(claims)]
        outbound = _Outbound("POST", url, headers, form_body, None, "s3", region)
        return await self._forward(request, call, outbound, None)

    def _post_bucket(self, request: web.Request) -> str:
        """The bucket a form is posted to: `/` on the bucket's host (virtual-hosted), or
        `/bucket`; with no query, which no form upload has and the upstream would not see."""
        raw_path, raw_query = _origin_form(request)
        segments = [s for s in raw_path.split("/") if s]
        virtual = self._virtual_bucket(request.host)
        if virtual is not None:
            bucket = None if segments else virtual
        else:
            bucket = unquote(segments[0]) if len(segments) == 1 else None
        if bucket is None or raw_query or not _BUCKET_NAME.match(bucket):
            raise Refused(
                Reason.INVALID_ARGUMENT,
                "iamgate: a POST upload is posted to its bucket (/bucket), and nothing else",
            )
        return bucket

    def _identify_post(
        self, call: CallRecord, bucket: str, fields: list[tuple[str, str]]
    ) -> Identified:
        """The upload as the PutObject it is: the bucket, the resolved key, and the fields
        S3 reads as PutObject's headers (acl, Content-Type, x-amz-meta-*...)."""
        path = f"/{bucket}/{fields[0][1]}"  # the key first: see forwarded_fields
        identified = self.index.identify(
            "s3",
            "PUT",
            path,
            [],
            identification_headers(fields),
            None,
            raw_path=quote(path, safe="/"),
        )
        key = fields[0][1]
        if (
            identified is None
            or identified.operation.name != "PutObject"
            or (identified.params.get("Bucket"), identified.params.get("Key")) != (bucket, key)
        ):
            raise Refused(
                Reason.AMBIGUOUS_REQUEST,
                "iamgate: this POST upload cannot be read as one PutObject",
            )
        call.identified = identified
        return identified

    def _post_account(self, claims: Claims) -> list[tuple[str, str]]:
        """The sandbox's account header, from the gateway's own decision: S3 knows a form's
        account from its signed credential, moto only from a header or an Authorization
        (which a form has not), so against the configured upstream the account is named.
        A client's x-moto-* header never crosses; this one is the gateway's."""
        return [("x-moto-account-id", claims.account_id)] if self._override else []

    def _post_destination(self, bucket: str, region: str) -> tuple[str, str]:
        """(URL, signing region) of the bucket upstream, from the endpoint data alone."""
        upstream = resolve_upstream("s3", region, override=self._override, bucket=bucket)
        path = "/" if upstream.bucket_in_host else "/" + quote(bucket, safe="")
        self._refuse_reserved(path)
        url = upstream.base_url + path
        _check_destination(url, upstream.base_url)
        return url, upstream.signing_region

    def _refuse_reserved(self, path: str) -> None:
        """moto routes these paths to its control API and instance metadata, whatever the
        service or bucket: through the gateway they would reset or read the whole sandbox.
        Checked on the path the upstream will see, after the bucket is placed."""
        if self._override and unquote(path).lstrip("/").startswith(_SANDBOX_CONTROL):
            raise Refused(
                Reason.ACCESS_DENIED,
                "iamgate: this path is reserved by the configured upstream",
            )

    async def _forward(
        self,
        request: web.Request,
        call: CallRecord,
        outbound: _Outbound,
        stream: BodyStream | None,
    ) -> web.StreamResponse:
        assert self._session is not None
        data = stream.chunks() if stream is not None else (outbound.body or None)
        try:
            upstream = await self._session.request(
                outbound.method,
                URL(outbound.url, encoded=True),
                headers=outbound.headers,
                data=data,
                allow_redirects=False,
                compress=False,
            )
        except Exception:
            if stream is not None and stream.refusal is not None:
                call.bytes_in = stream.bytes_in
                raise stream.refusal from None
            raise
        finally:
            if stream is not None:
                call.bytes_in = stream.bytes_in
        async with upstream:
            if stream is not None and stream.refusal is not None:
                raise stream.refusal
            call.status = upstream.status
            call.aws_request_id = (
                upstream.headers.get("x-amz-request-id")
                or upstream.headers.get("x-amzn-RequestId")
                or None
            )
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for raw_name, raw_value in upstream.raw_headers:
                name = raw_name.decode("latin-1")
                if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                    continue
                response.headers.add(name, raw_value.decode("latin-1"))
            length = upstream.headers.get("Content-Length")
            try:
                return await self._answer(request, call, upstream, response, length)
            except _StoppedReading:
                call.reason = (
                    f"iamgate: the client read nothing of the answer for {self._body_timeout:g} "
                    "seconds; its connection was closed"
                )
                return response

    async def _answer(
        self,
        request: web.Request,
        call: CallRecord,
        upstream: aiohttp.ClientResponse,
        response: web.StreamResponse,
        length: str | None,
    ) -> web.StreamResponse:
        """The upstream's answer, streamed to a client that must keep reading it."""
        send = self._to_client
        if upstream.status >= 400 and request.method != "HEAD":
            error_body = await upstream.content.read(MAX_ERROR_BODY + 1)
            call.error_code = _error_code(upstream.headers, error_body)
            if len(error_body) <= MAX_ERROR_BODY:
                response.content_length = len(error_body)
                await send(request, response.prepare(request))
                await send(request, response.write(error_body))
                call.bytes_out = len(error_body)
                await send(request, response.write_eof())
                return response
            await send(request, response.prepare(request))
            await send(request, response.write(error_body))
            call.bytes_out = len(error_body)
        elif self._urls is not None and self._names_upstream(request, call, upstream, length):
            body = self._urls.rewrite(await upstream.content.read())
            response.content_length = len(body)
            await send(request, response.prepare(request))
            await send(request, response.write(body))
            call.bytes_out = len(body)
            await send(request, response.write_eof())
            return response
        else:
            if upstream.status >= 400:
                call.error_code = _error_code(upstream.headers, b"")
            if length is not None:
                response.content_length = int(length)
                if int(length) <= SMALL_ANSWER and request.method != "HEAD":
                    # Most answers are a few KiB, read in one go: head and body leave in
                    # one write, in one step, instead of a step per chunk and one for the end.
                    body = await upstream.content.read()
                    await send(request, response.prepare(request))
                    await send(request, response.write_eof(body))
                    call.bytes_out = len(body)
                    return response
            await send(request, response.prepare(request))
        async for chunk in upstream.content.iter_any():
            await send(request, response.write(chunk))
            call.bytes_out += len(chunk)
        await send(request, response.write_eof())
        return response

    def _names_upstream(
        self,
        request: web.Request,
        call: CallRecord,
        upstream: aiohttp.ClientResponse,
        length: str | None,
    ) -> bool:
        """A sandbox answer whose queue URLs name the upstream (see `upstream_urls`)."""
        if self._urls is None or call.identified is None or request.method == "HEAD":
            return False
        op = call.identified.operation
        return self._urls.applies(op.service, op.name, upstream.status, upstream.headers, length)

    async def _to_client(self, request: web.Request, sending: Awaitable[object]) -> None:
        """One step of the answer; a client that takes none of it for the body timeout is
        disconnected, so it holds neither its call's share nor the upstream connection."""
        try:
            async with asyncio.timeout(self._body_timeout):
                await sending
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()
            raise _StoppedReading from None

    async def _web_identity(self, request: web.Request, call: CallRecord) -> web.Response:
        """The exchange's answer: STS's reply, or its refusal in STS's shape; either way
        the call's record says what the token was, and which binding decided."""
        try:
            return await self.web_identity.exchange(call)
        except Refused as refused:
            return self._refuse(request, call, refused)
        except Exception:
            log.exception("internal error exchanging a web identity token (%s)", call.request_id)
            return self._refuse(
                request,
                call,
                Refused(Reason.INTERNAL, "iamgate: an internal error ended this call; retry"),
            )

    def _virtual_bucket(self, host: str) -> str | None:
        host = host.lower()
        if self._public_host and host.endswith("." + self._public_host):
            return host[: -len(self._public_host) - 1] or None
        return None

    def _new_call(self, request: web.Request) -> CallRecord:
        return CallRecord.begin(request.remote, request.headers.get("User-Agent"))

    def _read_unsigned(
        self, request: web.Request, call: CallRecord, refused: Refused, body: bytes | None
    ) -> Refused:
        """What an unsigned request addresses, by its shape alone: its refusal is then in
        that service's protocol (a ClientError with the service's own code) and its record
        names the operation. It is never forwarded. Web identity and SAML exchanges, unsigned
        by design in AWS, are told that this gateway does not answer them yet."""
        raw_path, _, raw_query = request.raw_path.partition("?")
        found = self.index.identify_unsigned(
            request.method,
            unquote(raw_path),
            forwarded_query(raw_query),
            request.headers,
            body,
            raw_path=raw_path,
            virtual_bucket=self._virtual_bucket(request.host),
        )
        if found is None:
            return refused
        call.unsigned_as, call.identified = found
        if refused.reason is not Reason.MISSING_AUTH:
            return refused  # signed, but too badly to read: only its shape was wanted
        action = call.identified.operation.iam_action
        if action in _WEB_IDENTITY:
            trusted = "SAML provider" if action != EXCHANGE else "OIDC issuer (oidc.issuers)"
            return Refused(
                Reason.WEB_IDENTITY_UNCONFIGURED,
                f"iamgate: {action} is not configured for this gateway: it trusts no "
                f"{trusted}; sign in with `iamgate login` for credentials",
            )
        if call.identified.operation.service == "s3":  # S3 answers anonymous reads itself
            return Refused(Reason.MISSING_AUTH, ANONYMOUS_S3)
        return refused

    def _refuse(self, request: web.Request, call: CallRecord, refused: Refused) -> web.Response:
        signing_name = (
            call.auth.scope.service
            if call.auth
            else (call.unsigned_as or _guess_signing_name(request))
        )
        if call.identified is not None:
            protocol = call.identified.operation.protocol
            service = call.identified.operation.service
        else:
            protocol = self.index.protocol_for(
                signing_name, path=request.path, headers=request.headers
            )
            service = (self.index.services_for(signing_name) or (signing_name,))[0]
        rendered = render_error(
            refused.reason,
            refused.message,
            signing_name=signing_name,
            protocol=protocol,
            request_id=call.request_id,
            query_compatible=self.index.query_compatible(service),
            head=request.method == "HEAD",
            json_version=self.index.json_version(service),
            details=refused.details,
        )
        call.status = rendered.status
        failed = refused.reason in (Reason.UPSTREAM_UNAVAILABLE, Reason.INTERNAL)
        call.decision = "error" if failed else "denied"
        call.reason = f"{refused.reason.value}: {refused.message}"
        call.error_code = (  # a HEAD's refusal has no body to read it from
            _error_code(rendered.headers, rendered.body)
            or error_code_for(refused.reason, signing_name, protocol)[1]
        )
        call.bytes_out = len(rendered.body)
        response = web.Response(status=rendered.status, body=rendered.body)
        for name, value in rendered.headers.items():
            response.headers[name] = value
        if refused.reason in (
            Reason.UPSTREAM_UNAVAILABLE,
            Reason.AUDIT_UNAVAILABLE,
            Reason.THROTTLED,
        ):
            response.headers["Retry-After"] = "1"
        # A refused body the client is still sending is not read: close rather than drain.
        if not request.content.at_eof():
            response.force_close()
        return response

    def _record_forwarding(self, call: CallRecord) -> DurableRecord:
        return self.audit.start_durable(call.call_event())

    def _audit(self, call: CallRecord) -> None:
        self.audit.append(call.closing_event())


def upstream_session(server: ServerConfig) -> aiohttp.ClientSession:
    """The HTTP client for the upstream: bytes as they are (no decompression, no headers of
    its own), a bounded pool, and a bounded wait for a connection from it."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=server.upstream_connections, ttl_dns_cache=300),
        auto_decompress=False,
        # `connect` bounds the wait for a pooled connection to come free plus opening it:
        # a full pool answers 503 after it, instead of leaving the caller without answer.
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=server.upstream_connect_timeout.total_seconds(),
            sock_connect=10,
            sock_read=300,
        ),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


def _header_pairs(request: web.Request) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        for name, value in request.raw_headers
    ]


async def _off_the_loop_if_large(
    size: int, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
) -> _R:
    """Small forms are read and written on the loop; a large one (60 MiB takes a third of a
    second) in a thread, so the calls of others are not held up behind it."""
    if size <= STREAM_THRESHOLD:
        return work(*args, **kwargs)
    return await asyncio.to_thread(work, *args, **kwargs)


def _is_post_upload(request: web.Request) -> bool:
    """A browser-form upload: multipart/form-data posted with no SigV4 header or query."""
    return (
        "Authorization" not in request.headers
        and not any(key.lower().startswith("x-amz-") for key in request.query)
        and is_form_upload(request.method, request.headers.get("Content-Type", ""))
    )


def _origin_form(request: web.Request) -> tuple[str, str]:
    """(raw path, raw query) of an origin-form target (`/path?query`): an absolute-form or
    authority-form target (`CONNECT host:port`) would let the client name where the call
    goes, so it is refused before anything else is read."""
    raw_path, _, raw_query = request.raw_path.partition("?")
    if request.method == "CONNECT" or not raw_path.startswith("/"):
        raise Refused(
            Reason.AMBIGUOUS_REQUEST,
            "iamgate: only origin-form request targets (/path?query) are accepted",
        )
    return raw_path, raw_query


def _named_operation(headers: dict[str, str], query: list[tuple[str, str]]) -> str:
    """What an unknown request called itself, for its refusal and its audit record."""
    target = headers.get("x-amz-target")
    if target is not None:
        return f" (X-Amz-Target {target[:128]})"
    action = next((value for key, value in query if key.lower() == "action"), None)
    return f" (Action={action[:128]})" if action is not None else ""


def _check_destination(url: str, base_url: str) -> None:
    """The upstream URL must be on the endpoint's own host, whatever the path held."""
    built, base = URL(url, encoded=True), URL(base_url)
    if (built.scheme, built.host, built.port) != (base.scheme, base.host, base.port):
        raise Refused(Reason.AMBIGUOUS_REQUEST, "iamgate: the request would leave the endpoint")


def _gunzip(body: bytes) -> bytes:
    """A gzip body as the upstream will read it, bounded like any buffered body."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(body, MAX_BUFFERED_BODY)
    except zlib.error:
        raise Refused(Reason.AMBIGUOUS_REQUEST, "iamgate: the body is not valid gzip") from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise Refused(
            Reason.AMBIGUOUS_REQUEST,
            "iamgate: the gzip body is truncated, too large, or followed by other bytes",
        )
    return plain


def _body_stream(request: web.Request, verified: Verified, content_sha: str | None) -> BodyStream:
    if content_sha is not None and is_streaming(content_sha):
        decoder = ChunkedDecoder(
            content_sha,
            verified=verified,
            trailer_names=_split_list(request.headers.get("x-amz-trailer", "")),
            decoded_length=_int_or_none(request.headers.get("x-amz-decoded-content-length")),
        )
        return BodyStream(request.content, decoder=decoder)
    expected = content_sha if is_sha256_hex(content_sha) else None
    return BodyStream(request.content, expected_sha256=expected)


def _too_big_to_buffer(request: web.Request) -> bool:
    length = request.content_length
    return length is None or length > STREAM_THRESHOLD


def _admit(admission: Admission, authn: _Authenticated) -> None:
    """A request whose signature the head proved counts as its principal's call from now
    on; one whose body must be read first counts against its address until then."""
    if authn.verified is not None:
        admission.authenticated(authn.claims.principal)
    else:
        admission.unauthenticated()


async def _read_body(request: web.Request, admission: Admission, idle: float) -> bytes:
    """The whole body, up to MAX_BUFFERED_BODY; a client that leaves it without a byte for
    `idle` seconds is refused (RequestTimeout)."""
    too_large = Refused(Reason.INCOMPLETE_BODY, "iamgate: request body too large for this service")
    if request.content_length is not None and request.content_length > MAX_BUFFERED_BODY:
        raise too_large
    body = bytearray()
    while chunk := await read_within(request.content, MAX_BUFFERED_BODY, idle):
        if len(body) + len(chunk) > MAX_BUFFERED_BODY:
            raise too_large
        admission.buffered(len(chunk))  # nothing, once the signature has checked out
        body += chunk
    return bytes(body)


async def _small_body(request: web.Request, idle: float) -> bytes | None:
    """The body of an unsigned request, when it is small enough to read for its shape alone
    (a query form names its Action and Version there); nothing beyond UNSIGNED_PEEK."""
    length = request.content_length
    if not length or length > UNSIGNED_PEEK or not request.can_read_body:
        return None
    body = bytearray()
    try:
        async with asyncio.timeout(idle):
            while chunk := await request.content.read(UNSIGNED_PEEK + 1 - len(body)):
                body += chunk
                if len(body) > UNSIGNED_PEEK:
                    return None
    except (TimeoutError, ConnectionError, web.RequestPayloadError):
        return None
    return bytes(body)


def _first_segment(raw_path: str) -> str | None:
    segment = raw_path.lstrip("/").split("/", 1)[0]
    return unquote(segment) or None


def _split_list(value: str) -> list[str]:
    return [v.strip().lower() for v in value.split(",") if v.strip()]


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _guess_signing_name(request: web.Request) -> str:
    """For refusals before the credential scope is known: best effort from the request. A
    presigned URL names its service in its credential scope; SigV2 URLs are only S3's."""
    target = request.headers.get("X-Amz-Target", "")
    if target:
        return target.split("_", 1)[0].split(".", 1)[0].lower()
    credential = request.query.get("X-Amz-Credential", "").split("/")
    if len(credential) == 5 and credential[3]:
        return credential[3]
    if request.headers.get("Authorization", "").startswith("AWS "):
        return "s3"  # S3's own SigV2 header
    if "AWSAccessKeyId" in request.query and "SignatureVersion" not in request.query:
        return "s3"  # not the query APIs' SigV2, which names its version
    if "x-amz-content-sha256" in request.headers or _is_post_upload(request):
        return "s3"
    return "sts"


def _error_code(headers: object, body: bytes) -> str | None:
    get = getattr(headers, "get", None)
    if get is not None:
        for name in ("x-amzn-ErrorType", "x-amzn-query-error"):
            value = get(name)
            if value:
                return str(value).split(":", 1)[0].split(";", 1)[0]
    match = _ERROR_CODE_XML.search(body) or _ERROR_CODE_JSON.search(body)
    if match:
        return match.group(1).decode("utf-8", "replace").rsplit("#", 1)[-1]
    return None

"""The OpenAPI 3.0 description of `/api/v1`, served at `/api/v1/openapi.json`.

Written as data next to the handlers it describes, and checked both ways: a unit test
matches it against the API's routes, and schemathesis calls a real gateway with what the
document allows and checks every answer against it.
"""

from __future__ import annotations

from typing import Any

from iamgate.audit.events import EventType
from iamgate.config import USER_NAME as USER_NAME_RE

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "the request is malformed",
        401: "no valid login session",
        403: "not allowed for this caller",
        404: "no such thing",
        405: "method not allowed on this path",
        409: "conflicts with what exists",
        423: "the account is locked",
        429: "too many attempts from this address",
        502: "AWS (STS or the federation endpoint) failed",
    }
    return {str(s): _json(_ref("Error"), reasons[s]) for s in statuses}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
    public: bool = False,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses | _errors(*errors)}
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {JSON: {"schema": _ref(body)}},
        }
    if params:
        operation["parameters"] = params
    if public:
        operation["security"] = []
    return operation


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


NO_CONTENT = {"204": {"description": "done"}}
AUTH = (401,)
ADMIN = (401, 403)
STRING = {"type": "string"}
REQUIRED_STRING = {"type": "string", "minLength": 1}
USER_NAME = {"type": "string", "pattern": USER_NAME_RE.pattern}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
NAMES = {"type": "array", "items": STRING}
PASSWORD = {
    "type": "string",
    "minLength": 12,
    "description": "the administrator's choice; without it, the gateway generates one",
}

SCHEMAS: dict[str, Any] = {
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ready", "starting"]}},
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": STRING, "message": STRING},
    },
    "LoginRequest": {
        "type": "object",
        "required": ["user", "password", "otp"],
        "properties": {
            "user": REQUIRED_STRING,
            "password": REQUIRED_STRING,
            "otp": REQUIRED_STRING,
        },
    },
    "LoginSession": {
        "type": "object",
        "required": ["user", "token", "session", "expires_at"],
        "properties": {"user": STRING, "token": STRING, "session": STRING, "expires_at": TIME},
    },
    "Me": {
        "type": "object",
        "required": ["user", "roles", "administer", "session", "expires_at"],
        "properties": {
            "user": STRING,
            "roles": NAMES,
            "administer": {"type": "boolean"},
            "session": STRING,
            "expires_at": TIME,
        },
    },
    "Access": {
        "type": "object",
        "required": ["user", "accounts"],
        "properties": {
            "user": STRING,
            "accounts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "id", "labels", "roles"],
                    "properties": {
                        "name": STRING,
                        "id": STRING,
                        "labels": {"type": "object", "additionalProperties": STRING},
                        "roles": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["aws_role", "gateway_role", "allows"],
                                "properties": {
                                    "aws_role": STRING,
                                    "gateway_role": STRING,
                                    "allows": STRING,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "CredentialsRequest": {
        "type": "object",
        "required": ["account", "role"],
        "properties": {
            "account": REQUIRED_STRING,
            "role": REQUIRED_STRING,
            "ttl_seconds": {"type": "integer", "minimum": 60},
        },
    },
    "Credentials": {
        "description": "What the AWS CLI's credential_process expects",
        "type": "object",
        "required": ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"],
        "properties": {
            "Version": {"type": "integer", "enum": [1]},
            "AccessKeyId": STRING,
            "SecretAccessKey": STRING,
            "SessionToken": STRING,
            "Expiration": TIME,
        },
    },
    "ConsoleRequest": {
        "type": "object",
        "required": ["account", "role"],
        "properties": {
            "account": REQUIRED_STRING,
            "role": REQUIRED_STRING,
            "region": STRING,
            "destination": STRING,
        },
    },
    "ConsoleSignin": {
        "type": "object",
        "required": ["url", "expires_at", "role_chaining", "note"],
        "properties": {
            "url": STRING,
            "expires_at": TIME,
            "role_chaining": {"type": "boolean"},
            "note": {"type": "string", "nullable": True},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "time", "type", "fields"],
        "properties": {
            "id": STRING,
            "time": TIME,
            "type": STRING,
            "principal": {"type": "string", "nullable": True},
            "source_ip": {"type": "string", "nullable": True},
            "user_agent": {"type": "string", "nullable": True},
            "fields": {"type": "object"},
        },
    },
    "AuditPage": {
        "type": "object",
        "required": ["events", "next"],
        "properties": {
            "events": {"type": "array", "items": _ref("Event")},
            "next": {
                "type": "string",
                "nullable": True,
                "description": "a cursor: pass as `before` for the next (older) page, which"
                " holds each event once; null after the last page",
            },
        },
    },
    "User": {
        "type": "object",
        "required": ["name", "roles", "locked", "enrolled", "failed_logins", "active_sessions"],
        "properties": {
            "name": STRING,
            "roles": NAMES,
            "locked": {"type": "boolean"},
            "locked_until": NULLABLE_TIME,
            "enrolled": {"type": "boolean"},
            "failed_logins": {"type": "integer"},
            "created_at": NULLABLE_TIME,
            "active_sessions": {"type": "integer"},
        },
    },
    "Users": {
        "type": "object",
        "required": ["users"],
        "properties": {"users": {"type": "array", "items": _ref("User")}},
    },
    "NewUser": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": USER_NAME, "roles": NAMES, "password": PASSWORD},
    },
    "Reset": {
        "type": "object",
        "properties": {"password": PASSWORD},
    },
    "RevokedUser": {
        "type": "object",
        "required": ["user", "revoked_sessions"],
        "properties": {"user": STRING, "revoked_sessions": {"type": "integer"}},
    },
    "Roles": {"type": "object", "required": ["roles"], "properties": {"roles": NAMES}},
    "Enrolment": {
        "description": "Shown once: the new password and TOTP secret",
        "type": "object",
        "required": ["user", "password", "totp_secret", "otpauth_uri"],
        "properties": {
            "user": STRING,
            "password": {"type": "string", "nullable": True},
            "totp_secret": STRING,
            "otpauth_uri": STRING,
        },
    },
    "Sessions": {
        "type": "object",
        "required": ["sessions"],
        "properties": {
            "sessions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "user", "kind", "created_at", "expires_at"],
                    "properties": {
                        "id": STRING,
                        "user": STRING,
                        "kind": {"type": "string", "enum": ["cli", "web"]},
                        "created_at": TIME,
                        "last_seen_at": NULLABLE_TIME,
                        "expires_at": TIME,
                        "revoked_at": NULLABLE_TIME,
                        "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
                    },
                },
            }
        },
    },
    "GatewayRoles": {
        "type": "object",
        "required": ["roles"],
        "properties": {
            "roles": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "allow", "deny", "guardrails", "administer"],
                    "properties": {"name": STRING, "administer": {"type": "boolean"}},
                },
            }
        },
    },
    "Accounts": {
        "type": "object",
        "required": ["accounts"],
        "properties": {
            "accounts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "id", "labels", "partition", "external_id_set"],
                    "properties": {
                        "name": STRING,
                        "id": STRING,
                        "labels": {"type": "object", "additionalProperties": STRING},
                        "partition": STRING,
                        "external_id_set": {"type": "boolean"},
                    },
                },
            }
        },
    },
}

AUDIT_PARAMETERS = [
    _query("principal", STRING, "whose calls (administrators only; others see their own)"),
    _query("account", STRING, "account name or id"),
    _query("role", STRING, "IAM role"),
    _query("service", STRING, "e.g. s3"),
    _query("action", STRING, "IAM action glob, e.g. rds:Delete*"),
    _query(
        "decision", {"type": "string", "enum": ["allowed", "denied", "error"]}, "gateway decision"
    ),
    _query("status", {"type": "integer"}, "HTTP status from AWS"),
    _query("since", TIME, "at or after (the newest time a live view has)"),
    _query("until", TIME, "at or before"),
    _query(
        "before",
        STRING,
        "a cursor (the `next` of the previous page) or a time (the events strictly before it)",
    ),
    _query("type", {"type": "string", "enum": [str(t) for t in EventType]}, "default aws.call"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
]

PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": _op("This document", {"200": {"description": "OpenAPI 3.0"}}, public=True)
    },
    "/api/v1/health": {
        "get": _op(
            "Readiness, for a load balancer: ready once every service model is compiled",
            {
                "200": _json(_ref("Health"), "ready for AWS calls"),
                "503": _json(_ref("Health"), "still starting"),
            },
            public=True,
        )
    },
    "/api/v1/login": {
        "post": _op(
            "Log in with password and one-time code",
            {"200": _json(_ref("LoginSession"), "a login session (bearer token)")},
            body="LoginRequest",
            public=True,
            errors=(400, 401, 423, 429),
        )
    },
    "/api/v1/logout": {"post": _op("End this login session", NO_CONTENT, errors=(*AUTH, 403))},
    "/api/v1/me": {"get": _op("Who I am", {"200": _json(_ref("Me"), "me")}, errors=AUTH)},
    "/api/v1/access": {
        "get": _op(
            "Accounts and IAM roles I may use", {"200": _json(_ref("Access"), "")}, errors=AUTH
        )
    },
    "/api/v1/credentials": {
        "post": _op(
            "Short-lived gateway credentials for an account and IAM role",
            {"200": _json(_ref("Credentials"), "credential_process JSON")},
            body="CredentialsRequest",
            errors=(400, 401, 403, 404),
        )
    },
    "/api/v1/console": {
        "post": _op(
            "A console sign-in URL (secret: it signs in whoever opens it, within 15 minutes)",
            {"200": _json(_ref("ConsoleSignin"), "the sign-in URL")},
            body="ConsoleRequest",
            errors=(400, 401, 403, 404, 502),
        )
    },
    "/api/v1/audit": {
        "get": _op(
            "Audit events, newest first",
            {"200": _json(_ref("AuditPage"), "a page of events")},
            params=AUDIT_PARAMETERS,
            errors=(400, 401, 403),
        )
    },
    "/api/v1/users": {
        "get": _op("Users", {"200": _json(_ref("Users"), "")}, errors=ADMIN),
        "post": _op(
            "Add a user; the answer holds their first password and TOTP secret",
            {"201": _json(_ref("Enrolment"), "shown once")},
            body="NewUser",
            errors=(*ADMIN, 400, 409),
        ),
    },
    "/api/v1/users/{name}": {
        "parameters": [_path("name")],
        "get": _op("One user", {"200": _json(_ref("User"), "")}, errors=(*ADMIN, 404)),
        "delete": _op(
            "Remove a user and revoke all they hold", NO_CONTENT, errors=(*ADMIN, 404, 409)
        ),
    },
    "/api/v1/users/{name}/lock": {
        "parameters": [_path("name")],
        "post": _op(
            "Lock the user; everything they hold stops working", NO_CONTENT, errors=(*ADMIN, 404)
        ),
    },
    "/api/v1/users/{name}/unlock": {
        "parameters": [_path("name")],
        "post": _op("Unlock the user", NO_CONTENT, errors=(*ADMIN, 404)),
    },
    "/api/v1/users/{name}/reset": {
        "parameters": [_path("name")],
        "post": _op(
            "A new password (the body's, else generated) and TOTP secret; the user's sessions end",
            {"200": _json(_ref("Enrolment"), "shown once")},
            body="Reset",
            body_required=False,
            errors=(*ADMIN, 400, 404),
        ),
    },
    "/api/v1/users/{name}/reset-totp": {
        "parameters": [_path("name")],
        "post": _op(
            "A new TOTP secret only; the password stays, the user's sessions end",
            {"200": _json(_ref("Enrolment"), "shown once; password is null")},
            errors=(*ADMIN, 404),
        ),
    },
    "/api/v1/users/{name}/roles": {
        "parameters": [_path("name")],
        "put": _op(
            "Set the user's gateway roles",
            NO_CONTENT,
            body="Roles",
            errors=(*ADMIN, 400, 404, 409),
        ),
    },
    "/api/v1/users/{name}/sessions": {
        "parameters": [_path("name")],
        "delete": _op(
            "Revoke every login session and gateway credential the user holds now",
            {"200": _json(_ref("RevokedUser"), "how many login sessions were in force")},
            errors=(*ADMIN, 404),
        ),
    },
    "/api/v1/sessions": {
        "get": _op(
            "Login sessions in force (with all=true, ended ones too)",
            {"200": _json(_ref("Sessions"), "")},
            params=[
                _query("user", STRING, "only this user's"),
                _query(
                    "all",
                    {"type": "string", "enum": ["true", "false"]},
                    "also expired and revoked sessions",
                ),
            ],
            errors=(*ADMIN, 400),
        )
    },
    "/api/v1/sessions/{id}": {
        "parameters": [_path("id")],
        "delete": _op("Revoke a login session", NO_CONTENT, errors=(*ADMIN, 404)),
    },
    "/api/v1/credentials/{access_key}": {
        "parameters": [
            _path("access_key") | {"schema": {"type": "string", "pattern": "^ASIA.{16}$"}}
        ],
        "delete": _op("Revoke one gateway credential (ASIA…)", NO_CONTENT, errors=(*ADMIN, 400)),
    },
    "/api/v1/roles": {
        "get": _op(
            "Gateway roles (read-only)", {"200": _json(_ref("GatewayRoles"), "")}, errors=ADMIN
        )
    },
    "/api/v1/accounts": {
        "get": _op("AWS accounts (read-only)", {"200": _json(_ref("Accounts"), "")}, errors=ADMIN)
    },
}


def openapi_document(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "iamgate",
            "version": "1",
            "description": "Short-lived, audited access to many AWS accounts. Errors are "
            '`{"error": Code, "message": text}`.',
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"session_cookie": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a login session token from POST /api/v1/login",
                },
                "session_cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "iamgate-session",
                    "description": "the web UI's session (`__Host-iamgate-session` over TLS); "
                    "unsafe methods also need the page's X-CSRF-Token header",
                },
            },
        },
    }

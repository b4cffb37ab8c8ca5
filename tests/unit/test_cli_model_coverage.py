"""Every operation of the AWS CLI v1 in this environment is identified by the gateway.

The CLI bundles its own botocore (awscli/botocore), usually older than the gateway's. A
request is built from each of its operations' models (method, request URI with its labels
filled, required query keys and headers, X-Amz-Target, Action) and must be identified as that
operation. Without the legacy routes some are unknown (an SES v2 path since changed, SQS's
query protocol...); with them none may be. Some requests are the same bytes for two services
sharing a signing name (docdb and neptune speak rds's API); those answer the service named
like the signing name, with or without legacy routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import pytest
from model_requests import ModelRequest, cli_data_path, request_for, service_models

from iamgate.aws.operations import OperationIndex
from iamgate.refusals import Refused

# Same service, same request bytes (see test_operations.INHERENTLY_AMBIGUOUS).
SAME_REQUEST = {
    ("s3", "GetBucketLifecycle"): "GetBucketLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutBucketLifecycleConfiguration",
    ("s3", "GetBucketNotification"): "GetBucketNotificationConfiguration",
    ("s3", "PutBucketNotification"): "PutBucketNotificationConfiguration",
    ("s3", "ListDirectoryBuckets"): "ListBuckets",
}


@cache
def _requests() -> tuple[ModelRequest, ...]:
    def each() -> Iterator[ModelRequest]:
        for model in service_models(cli_data_path()):
            for name in model.operation_names:
                yield request_for(model, name)

    return tuple(each())


def _answers(index: OperationIndex) -> dict[ModelRequest, tuple[str, str] | str | None]:
    answers: dict[ModelRequest, tuple[str, str] | str | None] = {}
    for r in _requests():
        try:
            found = index.identify(r.signing_name, r.method, r.path, r.query, r.headers, r.body)
        except Refused as refused:
            answers[r] = f"refused: {refused}"
            continue
        answers[r] = (found.operation.service, found.operation.name) if found else None
    return answers


@pytest.fixture(scope="module")
def current() -> dict[ModelRequest, tuple[str, str] | str | None]:
    return _answers(OperationIndex.build(legacy=False))


@pytest.fixture(scope="module")
def with_legacy() -> dict[ModelRequest, tuple[str, str] | str | None]:
    return _answers(OperationIndex.build())


def test_every_cli_operation_is_identified(
    with_legacy: dict[ModelRequest, tuple[str, str] | str | None],
) -> None:
    assert len(with_legacy) > 15000  # the whole CLI, not a corner of it
    unknown = [(r.service, r.operation) for r, got in with_legacy.items() if got is None]
    refused = [
        (r.service, r.operation, got) for r, got in with_legacy.items() if isinstance(got, str)
    ]
    assert unknown == [] and refused == [], (unknown, refused)
    signing = {r.service: r.signing_name for r in with_legacy}
    for r, got in with_legacy.items():
        assert isinstance(got, tuple)
        if got == (r.service, r.operation):
            continue
        if got[0] == r.service:
            assert SAME_REQUEST.get((r.service, r.operation)) == got[1], (r, got)
        else:  # another service's operation, on the same signing name
            assert signing.get(got[0], r.signing_name) == r.signing_name, (r, got)


def test_legacy_routes_add_only_what_current_models_do_not_know(
    current: dict[ModelRequest, tuple[str, str] | str | None],
    with_legacy: dict[ModelRequest, tuple[str, str] | str | None],
) -> None:
    """Every request the current models identify (or refuse) is answered exactly as before;
    the legacy routes only answer the ones the current models call unknown."""
    changed = {r: (current[r], with_legacy[r]) for r in current if current[r] != with_legacy[r]}
    assert changed, "the CLI's botocore has no route the gateway's lacks: nothing exercised"
    for r, (before, after) in changed.items():
        assert before is None, (r, before, after)
        assert after == (r.service, r.operation), (r, after)

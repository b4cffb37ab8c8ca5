"""Which answers have their queue URLs rewritten in the sandbox, and how narrowly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iamgate.proxy.upstream_urls import MAX_REWRITTEN, UpstreamUrls

MOTO, GATEWAY = "http://127.0.0.1:5000", "http://127.0.0.1:8080"


def urls() -> UpstreamUrls:
    found = UpstreamUrls.for_upstream(MOTO, GATEWAY)
    assert found is not None
    return found


def test_answers_from_aws_itself_are_never_rewritten() -> None:
    assert UpstreamUrls.for_upstream(None, GATEWAY) is None


def test_the_upstreams_queue_urls_name_the_gateway() -> None:
    body = b'{"QueueUrls": ["http://127.0.0.1:5000/222222222222/a", "http://127.0.0.1:5000/1/b"]}'
    assert urls().rewrite(body) == (
        b'{"QueueUrls": ["http://127.0.0.1:8080/222222222222/a", "http://127.0.0.1:8080/1/b"]}'
    )


def test_another_port_or_host_is_left_as_it_is() -> None:
    body = b"<QueueUrl>http://127.0.0.1:50001/1/q</QueueUrl><QueueUrl>http://localhost:5000/1/q"
    assert urls().rewrite(body) == body


@given(st.binary(max_size=200))
def test_bytes_without_the_upstreams_url_cross_unchanged(body: bytes) -> None:
    if b"127.0.0.1:5000/" not in body:
        assert urls().rewrite(body) == body


def test_only_successful_plain_queue_url_answers_of_a_known_small_length() -> None:
    u = urls()
    for operation in ("CreateQueue", "GetQueueUrl", "ListQueues", "ListDeadLetterSourceQueues"):
        assert u.applies("sqs", operation, 200, {}, "120")
    assert not u.applies("sqs", "ReceiveMessage", 200, {}, "120")  # a message stays as sent
    assert not u.applies("s3", "ListBuckets", 200, {}, "120")
    assert not u.applies("sqs", "GetQueueUrl", 400, {}, "120")  # errors cross byte for byte
    assert not u.applies("sqs", "GetQueueUrl", 200, {"Content-Encoding": "gzip"}, "120")
    assert not u.applies("sqs", "GetQueueUrl", 200, {}, None)
    assert not u.applies("sqs", "GetQueueUrl", 200, {}, str(MAX_REWRITTEN + 1))

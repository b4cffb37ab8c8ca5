"""The compiled operation index on disk: read back as compiled, ignored when unsound or unsafe."""

from __future__ import annotations

import os
import time
from pathlib import Path

import botocore
import pytest

from iamgate.aws import index_cache
from iamgate.aws.index_cache import CachedIndex, cache_dir, cache_key, load, store
from iamgate.aws.operations import OperationIndex

FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
SERVICES = ["s3", "sts", "dynamodb", "ec2", "lambda"]
CALLS = [
    ("s3", "GET", "/bucket/some/key", [], {}, None),
    ("s3", "GET", "/bucket", [("list-type", "2")], {}, None),
    ("s3", "PUT", "/bucket/k", [("tagging", "")], {}, b"<Tagging/>"),
    ("sts", "POST", "/", [], FORM, b"Action=GetCallerIdentity&Version=2011-06-15"),
    ("ec2", "POST", "/", [], FORM, b"Action=RunInstances&MaxCount=3&Version=2016-11-15"),
    ("dynamodb", "POST", "/", [], {"x-amz-target": "DynamoDB_20120810.ListTables"}, b"{}"),
    ("lambda", "GET", "/2015-03-31/functions/", [], {}, None),
]


@pytest.fixture
def compiled() -> OperationIndex:
    index = OperationIndex.build(SERVICES)
    index.preload()
    return index


def identities(index: OperationIndex) -> list[object]:
    return [index.identify(*call) for call in CALLS]


def test_an_index_read_back_identifies_as_the_compiled_one(
    compiled: OperationIndex, tmp_path: Path
) -> None:
    path = tmp_path / "cache" / "index.pickle"
    assert store(compiled, path)
    loaded = load(path)
    assert loaded is not None and loaded.complete
    assert identities(loaded) == identities(compiled)
    assert all(found is not None for found in identities(loaded))
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["index.pickle"]  # no temporary left


def test_a_cached_index_stores_itself_once_fully_compiled(tmp_path: Path) -> None:
    index = CachedIndex.build(SERVICES)
    path = tmp_path / "index.pickle"
    index._store_in = path
    index.preload(["s3"])  # a part: nothing stored yet
    assert not path.exists()
    index.preload()
    loaded = load(path)
    assert loaded is not None and identities(loaded) == identities(index)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # torn write
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one bit
        lambda data: b"something else" + data[14:],  # not ours
        lambda data: b"",
    ],
)
def test_a_corrupt_cache_is_ignored_and_replaced(
    compiled: OperationIndex, tmp_path: Path, damage: object
) -> None:
    path = tmp_path / "index.pickle"
    assert store(compiled, path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    assert load(path) is None
    assert store(compiled, path)
    assert load(path) is not None


def test_an_incomplete_index_is_not_taken_for_a_compiled_one(tmp_path: Path) -> None:
    partial = OperationIndex.build(SERVICES)
    partial.preload(["s3"])
    path = tmp_path / "index.pickle"
    assert store(partial, path)
    assert load(path) is None


def test_a_cache_others_may_write_is_never_read(compiled: OperationIndex, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "index.pickle"
    assert store(compiled, path)
    os.chmod(path, 0o660)
    assert load(path) is None
    os.chmod(path, 0o600)
    os.chmod(path.parent, 0o720)
    assert load(path) is None
    assert not store(compiled, path)
    os.chmod(path.parent, 0o700)
    assert load(path) is not None


def test_where_the_cache_is(tmp_path: Path) -> None:
    assert cache_dir({"IAMGATE_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert cache_dir({"IAMGATE_CACHE_DIR": "off", "XDG_CACHE_HOME": "/x"}) is None
    assert cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/iamgate")
    assert cache_dir({}) == Path.home() / ".cache" / "iamgate"


def test_the_key_changes_with_botocore_and_the_model_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = cache_key(["/models"])
    assert cache_key(["/models"]) == key
    assert cache_key(["/models", "/more"]) != key
    monkeypatch.setattr(botocore, "__version__", "0.0.0")
    assert cache_key(["/models"]) != key
    monkeypatch.setattr(index_cache, "FORMAT", index_cache.FORMAT + 1)
    assert cache_key(["/models"]) != key


def test_without_a_cache_directory_the_index_is_built(tmp_path: Path) -> None:
    index = index_cache.load_or_build(None)
    assert not isinstance(index, CachedIndex) and not index.complete


def test_indexes_of_other_versions_unused_for_a_week_are_removed(
    compiled: OperationIndex, tmp_path: Path
) -> None:
    stale, recent = tmp_path / "operations-old.pickle", tmp_path / "operations-recent.pickle"
    for path in (stale, recent):
        path.write_bytes(b"an index of another version")
    week_ago = time.time() - index_cache.STALE_SECONDS - 60
    os.utime(stale, (week_ago, week_ago))
    assert store(compiled, tmp_path / "operations-new.pickle")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "operations-new.pickle",
        "operations-recent.pickle",
    ]

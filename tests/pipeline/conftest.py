from __future__ import annotations

from collections.abc import Iterator

import pytest
from pipeline import Pipeline, run_pipeline

from iamgate.aws.operations import OperationIndex


@pytest.fixture(scope="session")
def index() -> OperationIndex:
    built = OperationIndex.build()
    # Every signing name the tests call, as a gateway compiles all before it is ready: an
    # unsigned request is read only against compiled models (`identify_unsigned`).
    built.preload(
        ["ec2", "rds", "sts", "dynamodb", "sqs", "s3", "ecr", "iam", "lambda", "monitoring"]
    )
    return built


@pytest.fixture(scope="session")
def pipeline(index: OperationIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    yield from run_pipeline(tmp_path_factory.mktemp("pipeline"), index)


@pytest.fixture
def gw(pipeline: Pipeline) -> Pipeline:
    pipeline.reset()
    return pipeline

"""Configurable limits with clear errors: request size (--max-request-bytes). The concurrency
limit is in test_faults.py, the image pixel limit (preprocess max_image_pixels) in the matrix."""

import grpc
import numpy as np
import pytest

from tests.conftest import subset_repo
from tests.serverproc import start_server

from .samples import check_serves
from .wire import Client, request

LIMIT = 64 * 1024


def test_request_size_limit(test_repo, tmp_path):
    repo = subset_repo(test_repo, tmp_path / "models", "identity")
    with start_server(repo, "--max-request-bytes", LIMIT) as s, Client(s.url) as c:
        big = request("identity", {"INPUT0": np.zeros((1, LIMIT // 4), np.float32)})
        code, details, _ = c.infer(big)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"Received message larger than max ({big.ByteSize()} vs. {LIMIT})" in details
        check_serves(c, "identity")
        assert s.alive()


def test_request_size_limit_must_be_positive(test_repo):
    with pytest.raises(RuntimeError, match="--max-request-bytes must be positive"):
        start_server(test_repo, "--max-request-bytes", 0, timeout=60)

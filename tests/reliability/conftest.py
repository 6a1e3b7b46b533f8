"""Reliability fixtures: one repository holding the test models and the pose pipeline (tiny
network), and a server on it in explicit control mode with every model loaded."""

import os
import shutil

import pytest

from tests.conftest import build_pose_repo
from tests.serverproc import start_server

# Log lines that mean an exception escaped the server's own error handling.
ESCAPED = ("Unexpected [", "Traceback", "Exception in callback", "exception was never retrieved",
           "internal error in ")
# A traceback logged under these records is a model's own failure, reported with its name.
MODEL_FAILURES = ("backend.scheduler] model '", "loading model '")


def escaped_exceptions(log: str) -> list:
    """Lines of a server log that report an exception the server did not map to a status (a
    model that fails - raises, or ONNX Runtime refusing its input - is not counted)."""
    bad = []
    record = ""
    for line in log.splitlines():
        if line[:4].isdigit():  # a timestamped log record; tracebacks follow their record
            record = line
        if any(m in line for m in ESCAPED):
            if line.startswith("Traceback") and any(m in record for m in MODEL_FAILURES):
                continue
            bad.append(line)
    return bad


@pytest.fixture(scope="session")
def rel_repo(test_repo, tmp_path_factory):
    """The test models and the pose pipeline (tiny network) side by side in one repository."""
    repo = os.path.join(str(tmp_path_factory.mktemp("rel")), "models")
    shutil.copytree(test_repo, repo)
    return build_pose_repo(repo)


def model_names(repo) -> list:
    return sorted(n for n in os.listdir(repo) if os.path.isfile(os.path.join(repo, n, "config.pbtxt")))


@pytest.fixture(scope="module")
def rel_server(rel_repo):
    """Explicit control mode (load/unload allowed), every model loaded."""
    with start_server(rel_repo, "--model-control-mode", "explicit", "--load-model", "*") as s:
        yield s

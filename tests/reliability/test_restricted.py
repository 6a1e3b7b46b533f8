"""--grpc-restricted-protocol=<api list>:<header>=<value>, as Triton: the listed API groups refuse
calls without the header (UNAVAILABLE, Triton's message), the others work."""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from proto import grpc_service_pb2 as pb
from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server

from .wire import Client, request

C = grpc.StatusCode
ADMIN = ("admin-key", "s3cret")
INFER = ("infer-key", "abc")
ADMIN_GROUPS = ["model-repository", "shared-memory", "statistics", "trace", "logging"]
INFER_GROUPS = ["inference", "model-config"]

# One call per RPC, by API group.
CALLS = {
    "health": [("ServerLive", pb.ServerLiveRequest()), ("ServerReady", pb.ServerReadyRequest()),
               ("ModelReady", pb.ModelReadyRequest(name="identity"))],
    "metadata": [("ServerMetadata", pb.ServerMetadataRequest()),
                 ("ModelMetadata", pb.ModelMetadataRequest(name="identity"))],
    "model-config": [("ModelConfig", pb.ModelConfigRequest(name="identity"))],
    "inference": [("ModelInfer", request("identity", {"INPUT0": np.ones((1, 3), np.float32)}))],
    "statistics": [("ModelStatistics", pb.ModelStatisticsRequest(name="identity"))],
    "model-repository": [("RepositoryIndex", pb.RepositoryIndexRequest()),
                         ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="identity")),
                         ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="no_such"))],
    "shared-memory": [("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest()),
                      ("SystemSharedMemoryRegister",
                       pb.SystemSharedMemoryRegisterRequest(name="r", key="/nope", byte_size=4)),
                      ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest()),
                      ("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest()),
                      ("CudaSharedMemoryUnregister", pb.CudaSharedMemoryUnregisterRequest())],
    "trace": [("TraceSetting", pb.TraceSettingRequest())],
    "logging": [("LogSettings", pb.LogSettingsRequest())],
}


def _refusal(key):
    return (C.UNAVAILABLE, f"This protocol is restricted, expecting header '{key}'")


@pytest.fixture(scope="module")
def restricted_server(test_repo, tmp_path_factory):
    repo = subset_repo(test_repo, tmp_path_factory.mktemp("restricted") / "models", "identity")
    with start_server(repo, "--model-control-mode", "explicit", "--load-model", "identity",
                      f"--grpc-restricted-protocol={','.join(ADMIN_GROUPS)}:{ADMIN[0]}={ADMIN[1]}",
                      f"--grpc-restricted-protocol={','.join(INFER_GROUPS)}:{INFER[0]}={INFER[1]}") as s:
        yield s


@pytest.fixture
def client(restricted_server):
    with Client(restricted_server.url) as c:
        yield c


def test_every_group_is_covered():
    from backend.grpc_service import GROUPS
    assert {rpc for calls in CALLS.values() for rpc, _ in calls} | {"ModelStreamInfer", "CudaSharedMemoryRegister"} \
        == set(GROUPS)
    assert set(CALLS) == set(GROUPS.values())


@pytest.mark.parametrize("group", sorted(CALLS))
def test_restricted_groups_need_their_header(client, group):
    need = ADMIN if group in ADMIN_GROUPS else INFER if group in INFER_GROUPS else None
    wrong = [("admin-key", "guess"), ("infer-key", "guess")]
    for rpc, req in CALLS[group]:
        for metadata in (None, wrong, [ADMIN if need is INFER else INFER]):
            code, details, _ = client.call(rpc, req, metadata=metadata)
            if need is None:
                assert "restricted" not in details and code != C.UNAVAILABLE, (rpc, code, details)
            else:
                assert (code, details) == _refusal(need[0]), (rpc, metadata)
        code, details, _ = client.call(rpc, req, metadata=[need] if need else None)
        assert "restricted" not in details, (rpc, code, details)
        if rpc not in ("TraceSetting", "LogSettings", "SystemSharedMemoryRegister"):
            assert code == C.OK, (rpc, code, details)


def test_stream_is_restricted(client):
    req = request("identity", {"INPUT0": np.ones((1, 3), np.float32)}, id="s1")
    with pytest.raises(grpc.RpcError) as err:
        list(client.stub.ModelStreamInfer(iter([req]), timeout=30))
    assert (err.value.code(), err.value.details()) == _refusal(INFER[0])
    replies = list(client.stub.ModelStreamInfer(iter([req]), timeout=30, metadata=[INFER]))
    assert [r.infer_response.id for r in replies] == ["s1"] and replies[0].error_message == ""


def test_tritonclient_headers(restricted_server):
    """tritonclient's `headers=` is how Triton users pass the key."""
    with grpcclient.InferenceServerClient(restricted_server.url) as c:
        assert c.is_server_live()  # health is open
        with pytest.raises(InferenceServerException, match="expecting header 'admin-key'"):
            c.get_model_repository_index()
        assert len(c.get_model_repository_index(headers=dict([ADMIN])).models) == 1
        x = infer_input("INPUT0", np.ones((1, 2), np.float32))
        with pytest.raises(InferenceServerException, match="expecting header 'infer-key'"):
            c.infer("identity", [x])
        assert c.infer("identity", [x], headers=dict([INFER])).as_numpy("OUTPUT0").tolist() == [[1, 1]]


@pytest.mark.parametrize("spec", ["bogus:k=v", "inference", "inference:=v", ":k=v"])
def test_invalid_restriction_is_refused_at_start(test_repo, spec):
    with pytest.raises(RuntimeError, match="invalid --grpc-restricted-protocol"):
        start_server(test_repo, f"--grpc-restricted-protocol={spec}", timeout=60)

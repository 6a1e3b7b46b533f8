"""Health, server/model metadata, model configuration and the RPCs this server does not
implement, over real RPCs to the shared test server (tests/models)."""

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from tests.backend.rpc_helpers import expect_error, raw_request, raw_stub

EXTENSIONS = {"model_repository", "model_repository(unload_dependents)", "schedule_policy",
              "model_configuration", "system_shared_memory", "parameters", "statistics"}


def _stream_one(stub):
    req = raw_request("identity", {"INPUT0": np.ones((1, 2), np.float32)}, id="s1")
    return list(stub.ModelStreamInfer(iter([req]), timeout=30))


# Every RPC of inference.GRPCInferenceService with a request and the status it must answer
# on a server in control mode "none" (None = success).
RPCS = {
    "ServerLive": (pb.ServerLiveRequest(), None),
    "ServerReady": (pb.ServerReadyRequest(), None),
    "ModelReady": (pb.ModelReadyRequest(name="identity"), None),
    "ServerMetadata": (pb.ServerMetadataRequest(), None),
    "ModelMetadata": (pb.ModelMetadataRequest(name="identity"), None),
    "ModelConfig": (pb.ModelConfigRequest(name="identity"), None),
    "ModelInfer": (raw_request("identity", {"INPUT0": np.ones((1, 2), np.float32)}), None),
    "ModelStreamInfer": (None, None),
    "ModelStatistics": (pb.ModelStatisticsRequest(), None),
    "RepositoryIndex": (pb.RepositoryIndexRequest(), None),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest(model_name="identity"),
                            ("UNAVAILABLE", "explicit model load / unload is not allowed")),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest(model_name="identity"),
                              ("UNAVAILABLE", "explicit model load / unload is not allowed")),
    "SystemSharedMemoryStatus": (pb.SystemSharedMemoryStatusRequest(), None),
    "SystemSharedMemoryRegister": (pb.SystemSharedMemoryRegisterRequest(
        name="nowhere", key="/no_such_region_for_tests", byte_size=8),
        ("INVALID_ARGUMENT", "Unable to open shared memory region")),
    "SystemSharedMemoryUnregister": (pb.SystemSharedMemoryUnregisterRequest(name="never_registered"), None),
    "CudaSharedMemoryStatus": (pb.CudaSharedMemoryStatusRequest(), None),
    "CudaSharedMemoryRegister": (pb.CudaSharedMemoryRegisterRequest(name="g", byte_size=8),
                                 ("UNIMPLEMENTED", "CUDA shared memory is not supported")),
    "CudaSharedMemoryUnregister": (pb.CudaSharedMemoryUnregisterRequest(), None),
    "TraceSetting": (pb.TraceSettingRequest(), ("UNIMPLEMENTED", "TraceSetting is not supported")),
    "LogSettings": (pb.LogSettingsRequest(), ("UNIMPLEMENTED", "LogSettings is not supported")),
}


def test_the_table_covers_all_20_rpcs():
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert set(RPCS) == {m.name for m in service.methods}
    assert len(RPCS) == 20


@pytest.mark.parametrize("rpc", sorted(RPCS))
def test_every_rpc_answers(server, rpc):
    stub = raw_stub(server.url)
    request, expected = RPCS[rpc]
    call = (lambda: _stream_one(stub)) if rpc == "ModelStreamInfer" else \
        (lambda: getattr(stub, rpc)(request, timeout=30))
    if expected is None:
        answer = call()
        assert answer is not None
    else:
        with expect_error(*expected):
            call()


def test_server_live_and_not_ready_while_a_model_failed(triton_client):
    assert triton_client.is_server_live()
    # fail_load is in the repository and failed: strict readiness (Triton's default) says no.
    assert not triton_client.is_server_ready()


def test_model_ready(triton_client):
    assert triton_client.is_model_ready("identity")
    assert triton_client.is_model_ready("versioned", "3")
    assert not triton_client.is_model_ready("versioned", "2")  # excluded by the version policy
    assert not triton_client.is_model_ready("fail_load")
    with expect_error("INVALID_ARGUMENT", "Request for unknown model: 'no_such_model' is not found"):
        triton_client.is_model_ready("no_such_model")


def test_server_metadata_names_exactly_what_is_implemented(triton_client):
    meta = triton_client.get_server_metadata()
    assert meta.name and meta.version
    # binary_tensor_data: the HTTP endpoint serves it (on by default; see test_http for off)
    assert set(meta.extensions) == EXTENSIONS | {"binary_tensor_data"}
    assert len(meta.extensions) == len(EXTENSIONS) + 1


def _io(tensors):
    return [(t.name, t.datatype, list(t.shape)) for t in tensors]


def test_model_metadata_prefixes_the_batch_dimension(triton_client):
    meta = triton_client.get_model_metadata("identity")
    assert (meta.name, list(meta.versions), meta.platform) == ("identity", ["1"], "python")
    assert _io(meta.inputs) == [("INPUT0", "FP32", [-1, -1])]
    assert _io(meta.outputs) == [("OUTPUT0", "FP32", [-1, -1])]
    # max_batch_size 0: dims as configured, no batch dimension.
    meta = triton_client.get_model_metadata("add_sub")
    assert _io(meta.inputs) == [("INPUT0", "FP32", [4]), ("INPUT1", "FP32", [4])]
    assert _io(meta.outputs) == [("OUTPUT0", "FP32", [4]), ("OUTPUT1", "FP32", [4])]


def test_model_metadata_platforms_versions_and_bytes(triton_client):
    assert triton_client.get_model_metadata("add_onnx").platform == "onnxruntime_onnx"
    ens = triton_client.get_model_metadata("ensemble_add")
    assert (ens.platform, list(ens.versions)) == ("ensemble", ["1"])
    assert _io(ens.inputs) == [("INPUT0", "FP32", [-1, 4]), ("INPUT1", "FP32", [-1, 4])]
    assert list(triton_client.get_model_metadata("versioned").versions) == ["1", "3"]
    assert triton_client.get_model_metadata("versioned", "1").name == "versioned"
    assert _io(triton_client.get_model_metadata("echo_bytes").outputs) == [
        ("OUTPUT0", "BYTES", [-1, -1]), ("LENGTH", "INT32", [-1, -1])]


def test_model_config_has_triton_defaults_filled(triton_client):
    cfg = triton_client.get_model_config("identity").config
    assert cfg.name == "identity" and cfg.backend == "python"
    assert cfg.version_policy.WhichOneof("policy_choice") == "latest"
    assert cfg.version_policy.latest.num_versions == 1
    assert [(g.name, g.count, g.kind) for g in cfg.instance_group] == [("identity_0", 2, 2)]  # KIND_CPU
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]  # = max_batch_size
    cfg = triton_client.get_model_config("add_sub").config
    assert [(g.name, g.count) for g in cfg.instance_group] == [("add_sub_0", 1)]
    cfg = triton_client.get_model_config("versioned").config
    assert list(cfg.version_policy.specific.versions) == [1, 3]
    cfg = triton_client.get_model_config("add_onnx").config
    assert (cfg.platform, cfg.backend) == ("onnxruntime_onnx", "onnxruntime")


def test_ensemble_config_reports_platform_and_latest_step_versions(triton_client):
    cfg = triton_client.get_model_config("ensemble_add").config
    assert cfg.platform == "ensemble"
    assert not cfg.instance_group
    steps = cfg.ensemble_scheduling.step
    assert [(s.model_name, s.model_version) for s in steps] == [("add_onnx", -1), ("identity", -1)]


def test_model_config_as_json_for_python_models(triton_client):
    as_json = triton_client.get_model_config("add_sub", as_json=True)["config"]
    assert as_json["input"][0]["dims"] == ["4"]  # int64 in proto JSON: what tritonclient shows
    assert as_json["instance_group"][0]["kind"] == "KIND_CPU"


@pytest.mark.parametrize("call", ["get_model_metadata", "get_model_config"])
def test_metadata_and_config_errors(triton_client, call):
    fn = getattr(triton_client, call)
    with expect_error("INVALID_ARGUMENT", "Request for unknown model: 'no_such_model' is not found"):
        fn("no_such_model")
    with expect_error("NOT_FOUND", "Request for unknown model: 'versioned' version 2 is not found"):
        fn("versioned", "2")
    with expect_error("INVALID_ARGUMENT", "failed to get model version from specified version string 'x1'"):
        fn("identity", "x1")
    with expect_error("UNAVAILABLE", "'fail_load'"):
        fn("fail_load")


def test_cuda_shared_memory_is_an_empty_no_op(triton_client):
    triton_client.unregister_cuda_shared_memory()  # perf_analyzer's shm manager calls this
    assert not triton_client.get_cuda_shared_memory_status().regions
    with expect_error("UNIMPLEMENTED", "CUDA shared memory is not supported"):
        triton_client.unregister_cuda_shared_memory("gpu_region")
    with expect_error("UNIMPLEMENTED", "CUDA shared memory is not supported"):
        triton_client.get_cuda_shared_memory_status("gpu_region")


def test_trace_and_log_settings_are_unimplemented(triton_client):
    with expect_error("UNIMPLEMENTED", "TraceSetting is not supported"):
        triton_client.get_trace_settings()
    with expect_error("UNIMPLEMENTED", "LogSettings is not supported"):
        triton_client.update_log_settings({"log_verbose_level": 1})

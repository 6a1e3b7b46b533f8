"""A small in-process Triton gRPC server for the client tests.

It speaks the real protocol (tritonclient's own generated service) and serves:
* `hrnet_pose`, an ensemble (preprocess -> hrnet_om -> grouping) that answers each image with the
  keypoints registered for its bytes, and rejects the images it is told to reject;
* `identity` (FP32 [-1] with batching), which echoes its input.
Statistics, streaming and system shared memory work as in Triton, so the clients can be tested
deterministically (rejections, interruptions, answers) without the real server.
"""

from __future__ import annotations

import hashlib
import mmap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor

POSE_STEPS = ("preprocess", "hrnet_om", "grouping")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Reject(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def model_configs(random_weights: bool) -> dict:
    configs = {
        "hrnet_pose": mc.ModelConfig(
            name="hrnet_pose", platform="ensemble", max_batch_size=0,
            input=[mc.ModelInput(name="IMAGE", data_type=mc.TYPE_STRING, dims=[1])],
            output=[mc.ModelOutput(name="KEYPOINTS", data_type=mc.TYPE_FP32, dims=[-1, 17, 3]),
                    mc.ModelOutput(name="SCORES", data_type=mc.TYPE_FP32, dims=[-1])],
            ensemble_scheduling=mc.ModelEnsembling(step=[
                mc.ModelEnsembling.Step(model_name=s, model_version=-1) for s in POSE_STEPS])),
        "identity": mc.ModelConfig(
            name="identity", backend="python", max_batch_size=8,
            input=[mc.ModelInput(name="INPUT0", data_type=mc.TYPE_FP32, dims=[-1])],
            output=[mc.ModelOutput(name="OUTPUT0", data_type=mc.TYPE_FP32, dims=[-1])]),
    }
    for step in POSE_STEPS:
        configs[step] = mc.ModelConfig(name=step, backend="python")
    configs["hrnet_om"].parameters["weights"].string_value = (
        "random-init" if random_weights else "hrnet_w32_coco_512x512-bcb8c247_20200816.pth")
    return configs


METADATA = {
    "hrnet_pose": ([("IMAGE", "BYTES", [1])],
                   [("KEYPOINTS", "FP32", [-1, 17, 3]), ("SCORES", "FP32", [-1])]),
    "identity": ([("INPUT0", "FP32", [-1, -1])], [("OUTPUT0", "FP32", [-1, -1])]),
}


class FakeTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, answers: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 reject: set[str] | None = None, delay_s: float = 0.0,
                 random_weights: bool = False,
                 reject_code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
        self.answers = answers or {}      # image sha256 -> (keypoints [P,17,3], scores [P])
        self.reject = reject or set()     # image sha256s answered with an error
        self.reject_code = reject_code
        self.delay_s = delay_s
        self.configs = model_configs(random_weights)
        self.requests: list[str] = []     # sha256 of every pose image received, in order
        self.regions: dict[str, tuple[mmap.mmap, int, int]] = {}
        self.stats = {name: pb.ModelStatistics(name=name, version="1") for name in self.configs}
        self.lock = threading.Lock()

    # -- health and model information ------------------------------------------------------
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        if request.name not in self.configs:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Request for unknown model: '{request.name}' is not found")
        return pb.ModelReadyResponse(ready=True)

    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="triton", version="2.0.0",
                                         extensions=["statistics", "system_shared_memory"])

    def ModelMetadata(self, request, context):
        if request.name not in METADATA:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        inputs, outputs = METADATA[request.name]
        tensors = lambda ts: [pb.ModelMetadataResponse.TensorMetadata(
            name=n, datatype=d, shape=s) for n, d, s in ts]
        return pb.ModelMetadataResponse(name=request.name, versions=["1"],
                                        platform=self.configs[request.name].platform or "python",
                                        inputs=tensors(inputs), outputs=tensors(outputs))

    def ModelConfig(self, request, context):
        if request.name not in self.configs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        return pb.ModelConfigResponse(config=self.configs[request.name])

    def ModelStatistics(self, request, context):
        with self.lock:
            names = [request.name] if request.name else list(self.stats)
            return pb.ModelStatisticsResponse(model_stats=[self.stats[n] for n in names])

    # -- system shared memory --------------------------------------------------------------
    def SystemSharedMemoryRegister(self, request, context):
        f = open("/dev/shm/" + request.key.lstrip("/"), "r+b")
        self.regions[request.name] = (mmap.mmap(f.fileno(), 0), request.offset, request.byte_size)
        f.close()
        return pb.SystemSharedMemoryRegisterResponse()

    def SystemSharedMemoryUnregister(self, request, context):
        for name in [request.name] if request.name else list(self.regions):
            region = self.regions.pop(name, None)
            if region:
                region[0].close()
        return pb.SystemSharedMemoryUnregisterResponse()

    def SystemSharedMemoryStatus(self, request, context):
        return pb.SystemSharedMemoryStatusResponse()

    # -- inference -------------------------------------------------------------------------
    def ModelInfer(self, request, context):
        try:
            return self.infer(request)
        except Reject as err:
            context.abort(err.code, str(err))

    def ModelStreamInfer(self, request_iterator, context):
        for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=self.infer(request))
            except Reject as err:
                yield pb.ModelStreamInferResponse(error_message=str(err))

    def infer(self, request) -> pb.ModelInferResponse:
        start = time.perf_counter_ns()
        if request.model_name not in METADATA:
            raise Reject(grpc.StatusCode.NOT_FOUND,
                         f"Request for unknown model: '{request.model_name}' is not found")
        raw = iter(request.raw_input_contents)
        data = {}
        for tensor in request.inputs:
            if "shared_memory_region" in tensor.parameters:
                mm, offset, _ = self.regions[tensor.parameters["shared_memory_region"].string_param]
                size = tensor.parameters["shared_memory_byte_size"].int64_param
                data[tensor.name] = bytes(mm[offset:offset + size])
            else:
                data[tensor.name] = next(raw)
        if request.model_name == "hrnet_pose":
            image = bytes(deserialize_bytes_tensor(data["IMAGE"])[0])
            key = digest(image)
            with self.lock:
                self.requests.append(key)
            time.sleep(self.delay_s)
            if key in self.reject:
                self.count(["hrnet_pose"], start, failed=True)
                raise Reject(self.reject_code,
                             "in ensemble 'hrnet_pose', unable to decode the image")
            keypoints, scores = self.answers.get(
                key, (np.zeros((0, 17, 3), np.float32), np.zeros(0, np.float32)))
            outputs = {"KEYPOINTS": ("FP32", np.asarray(keypoints, np.float32)),
                       "SCORES": ("FP32", np.asarray(scores, np.float32))}
            self.count(["hrnet_pose", *POSE_STEPS], start)
        else:
            shape = list(request.inputs[0].shape)
            echo = np.frombuffer(data["INPUT0"], np.float32).reshape(shape)
            outputs = {"OUTPUT0": ("FP32", echo)}
            self.count(["identity"], start)

        response = pb.ModelInferResponse(model_name=request.model_name, model_version="1",
                                         id=request.id)
        wanted = [o.name for o in request.outputs] or list(outputs)
        requested = {o.name: o for o in request.outputs}
        for name in wanted:
            dtype, array = outputs[name]
            response.outputs.add(name=name, datatype=dtype, shape=array.shape)
            params = requested[name].parameters if name in requested else {}
            if "shared_memory_region" in params:
                mm, offset, _ = self.regions[params["shared_memory_region"].string_param]
                mm[offset:offset + array.nbytes] = array.tobytes()
                response.raw_output_contents.append(b"")
            else:
                response.raw_output_contents.append(array.tobytes())
        return response

    def count(self, names: list[str], start: int, failed: bool = False) -> None:
        """Cumulative statistics as Triton keeps them: each step gets a share of the time."""
        elapsed = time.perf_counter_ns() - start
        with self.lock:
            for name in names:
                s = self.stats[name].inference_stats
                if failed:
                    s.fail.count += 1
                    s.fail.ns += elapsed
                    continue
                share = elapsed // (len(names) - 1) if len(names) > 1 and name != names[0] \
                    else elapsed
                self.stats[name].inference_count += 1
                self.stats[name].execution_count += 1
                s.success.count += 1
                s.success.ns += share
                for part, fraction in (("queue", 0.1), ("compute_input", 0.1),
                                       ("compute_infer", 0.6), ("compute_output", 0.1)):
                    getattr(s, part).count += 1
                    getattr(s, part).ns += int(share * fraction)


class FakeServer:
    """Runs a FakeTriton on a free loopback port; `.url`, `.triton`, `.stop()`."""

    def __init__(self, triton: FakeTriton):
        self.triton = triton
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(triton, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.stop(grace=None)
        for mm, _, _ in self.triton.regions.values():
            mm.close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

"""The server's one core: every RPC handler is a thin call into `InferenceCore`. It owns the
repository, shared memory, inference routing and statistics bookkeeping."""

import asyncio
import logging
import time

from proto import grpc_service_pb2 as pb

from . import __version__, codec, dtypes, validation
from .backends import python_backend
from .errors import InvalidArgument, ServerError, Unavailable
from .repository import Repository
from .shm import SharedMemoryManager
from .types import InferRequest, InferResponse

log = logging.getLogger("backend.core")

SERVER_NAME = "triton-py"
# Exactly what this server implements (Triton's names; perf_analyzer reads "statistics").
EXTENSIONS = ["model_repository", "model_repository(unload_dependents)", "schedule_policy",
              "model_configuration", "system_shared_memory", "parameters", "statistics"]


class InferenceCore:
    def __init__(self, repository: Repository, explicit_control: bool = False,
                 strict_readiness: bool = True, max_inflight: int = 0):
        self.repository = repository
        repository.infer_internal = self.infer
        self.shm = SharedMemoryManager()
        self.explicit_control = explicit_control
        self.strict_readiness = strict_readiness
        self.max_inflight = max_inflight
        self.inflight = 0
        self.live = False
        self.shutting_down = False
        self.loop = None

    async def start(self, load: list | None = None):
        """Load the models: all of them, or those named in explicit mode ('*' = all)."""
        self.loop = asyncio.get_running_loop()
        python_backend.install_hooks(self, self.loop)
        names = self.repository.scan()
        if self.explicit_control:
            wanted = names if load and "*" in load else list(load or [])
        else:
            wanted = names
        failed = []
        for name in wanted:
            if self.repository.is_loaded(name):
                continue  # already loaded as a step of an ensemble earlier in the list
            try:
                await self.repository.load(name)
            except ServerError as e:
                failed.append((name, e.message))
        self.live = True
        return failed

    # ---- health and metadata -----------------------------------------------------------------
    def server_ready(self) -> bool:
        if not self.live or self.shutting_down:
            return False
        if self.strict_readiness:
            return all(e.versions for e in self.repository.entries.values()
                       if e.reason != "unloaded")
        return True

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def model_ready(self, name: str, version: str) -> bool:
        return self.repository.is_ready(name, version)

    def model_metadata(self, name: str, version: str) -> pb.ModelMetadataResponse:
        model = self.repository.get(name, version)
        entry = self.repository.entries[name]
        lead = [-1] if model.max_batch_size > 0 else []
        msg = pb.ModelMetadataResponse(name=name, versions=[str(v) for v in sorted(entry.versions)],
                                       platform=model.platform)
        for spec in model.inputs.values():
            msg.inputs.add(name=spec.name, datatype=spec.datatype, shape=lead + spec.dims)
        for spec in model.outputs.values():
            msg.outputs.add(name=spec.name, datatype=spec.datatype, shape=lead + spec.dims)
        return msg

    def model_config(self, name: str, version: str) -> pb.ModelConfigResponse:
        model = self.repository.get(name, version)
        resp = pb.ModelConfigResponse()
        resp.config.CopyFrom(model.config)
        if model.platform == "ensemble":
            for step in resp.config.ensemble_scheduling.step:
                if step.model_version == 0:
                    step.model_version = -1
        return resp

    def statistics(self, name: str, version: str) -> pb.ModelStatisticsResponse:
        resp = pb.ModelStatisticsResponse()
        if name:
            if name not in self.repository.entries:
                raise InvalidArgument(f"requested model '{name}' is not available")
            models = [self.repository.get(name, version)]
        else:
            models = [m for e in sorted(self.repository.entries.values(), key=lambda e: e.name)
                      for _, m in sorted(e.versions.items())]
        for m in models:
            s = resp.model_stats.add(name=m.name, version=m.version_str)
            m.stats.fill(s)
        return resp

    # ---- inference ---------------------------------------------------------------------------
    async def infer_grpc(self, msg: pb.ModelInferRequest, is_cancelled=None) -> pb.ModelInferResponse:
        if self.shutting_down:
            raise Unavailable("Server is shutting down: new requests are not accepted")
        if self.max_inflight and self.inflight >= self.max_inflight:
            raise Unavailable(f"Server is at its limit of {self.max_inflight} concurrent requests")
        model = self.repository.get(msg.model_name, msg.model_version)
        self.inflight += 1
        try:
            start = time.monotonic_ns()
            try:
                request = codec.decode_request(msg, model, self.shm)
            except ServerError:
                model.stats.request_done(False, time.monotonic_ns() - start)
                raise
            request.is_cancelled = is_cancelled
            response = await self._run(model, request, start)
            return codec.encode_response(response, request, model, self.shm)
        finally:
            self.inflight -= 1

    async def infer(self, request: InferRequest) -> InferResponse:
        """Internal requests (ensemble steps, BLS): validated like external ones."""
        model = self.repository.get(request.model_name, request.model_version)
        start = time.monotonic_ns()
        try:
            batch = validation.check_inputs(model, [
                (n, request.input_datatypes.get(n) or dtypes.wire_from_numpy(a.dtype), a.shape)
                for n, a in request.inputs.items()])
            if request.outputs is not None:
                validation.check_outputs(model, [o.name for o in request.outputs])
            del batch
        except ServerError:
            model.stats.request_done(False, time.monotonic_ns() - start)
            raise
        return await self._run(model, request, start)

    async def _run(self, model, request, start):
        entry = self.repository.entries[model.name]
        entry.in_flight += 1
        entry.idle.clear()
        ok = False
        try:
            response = await model.infer(request)
            response.model_name = model.name
            response.model_version = model.version_str
            response.id = request.id
            ok = True
            return response
        finally:
            entry.in_flight -= 1
            if entry.in_flight == 0:
                entry.idle.set()
            total = time.monotonic_ns() - start
            if ok:
                model.stats.request_done(True, total, response.timing)
                if model.platform == "ensemble":
                    model.stats.execution_done(request.batch_size(model.max_batch_size), response.timing)
            else:
                model.stats.request_done(False, total)

    # ---- repository --------------------------------------------------------------------------
    def _check_control(self):
        if not self.explicit_control:
            raise Unavailable("explicit model load / unload is not allowed if polling is enabled")

    async def load(self, name: str, params: dict):
        self._check_control()
        config = ""
        files = {}
        for key, value in params.items():
            if key == "config":
                if not isinstance(value, str):
                    raise InvalidArgument("'config' parameter must be a JSON string")
                config = value
            elif key.startswith("file:"):
                if not isinstance(value, bytes):
                    raise InvalidArgument(f"'{key}' parameter must carry bytes")
                files[key[len("file:"):]] = value
        await self.repository.load(name, config, files or None)

    async def unload(self, name: str, params: dict):
        self._check_control()
        await self.repository.unload(name, bool(params.get("unload_dependents", False)))

    async def close(self):
        await self.repository.close()
        self.shm.unregister("")

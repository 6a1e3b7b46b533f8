"""The server's one core, free of any transport (as MLServer's and KServe's DataPlane): gRPC and
HTTP handlers are thin codecs over `InferenceCore`. It owns the repository, shared memory,
admission control, request validation, inference routing and statistics bookkeeping; it takes
and returns the server's own types (backend/types.py) and raises backend/errors.py errors."""

import asyncio
import contextlib
import logging
import time

from proto import model_config_pb2 as mc

from . import __version__, decoupled, dtypes, tensor_io, validation
from .backends import python_backend
from .errors import Cancelled, InvalidArgument, ServerError, Unavailable, Unsupported
from .repository import Repository
from .shm import SharedMemoryManager
from .types import InferRequest, InferResponse, InferResult, WireRequest

log = logging.getLogger("backend.core")

SERVER_NAME = "triton-py"
# Exactly what this server implements (Triton's names; perf_analyzer reads "statistics").
EXTENSIONS = ["model_repository", "model_repository(unload_dependents)", "schedule_policy",
              "model_configuration", "system_shared_memory", "parameters", "statistics"]
BINARY_EXTENSION = "binary_tensor_data"  # named only while the HTTP endpoint serves it
# Triton's refusals of a decoupled model outside a stream (grpc infer_handler.cc, http_server.cc).
GRPC_DECOUPLED = "ModelInfer RPC doesn't support models with decoupled transaction policy"
HTTP_DECOUPLED = "HTTP end point doesn't support models with decoupled transaction policy"


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
        self.extensions = list(EXTENSIONS)

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

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(self.extensions)}

    def model_ready(self, name: str, version: str) -> bool:
        return self.repository.is_ready(name, version)

    def model_metadata(self, name: str, version: str) -> dict:
        """KServe v2 model metadata; with a batch dimension, shapes lead with -1 (as Triton)."""
        model = self.repository.get(name, version)
        entry = self.repository.entries[name]
        lead = [-1] if model.max_batch_size > 0 else []

        def tensors(specs):
            return [{"name": s.name, "datatype": s.datatype, "shape": lead + s.dims} for s in specs.values()]
        return {"name": name, "versions": [str(v) for v in sorted(entry.versions)],
                "platform": model.platform, "inputs": tensors(model.inputs), "outputs": tensors(model.outputs)}

    def model_config(self, name: str, version: str) -> mc.ModelConfig:
        model = self.repository.get(name, version)
        config = mc.ModelConfig()
        config.CopyFrom(model.config)
        if model.platform == "ensemble":
            for step in config.ensemble_scheduling.step:
                if step.model_version == 0:
                    step.model_version = -1  # "latest": perf_analyzer would ask for version 0
        return config

    def statistics(self, name: str, version: str) -> dict:
        """ModelStatistics in Triton's JSON layout: {"model_stats": [...]}."""
        if name:
            if name not in self.repository.entries:
                raise InvalidArgument(f"requested model '{name}' is not available")
            models = [self.repository.get(name, version)]
        else:
            models = self.loaded_models()
        return {"model_stats": [m.stats.snapshot(m.name, m.version_str) for m in models]}

    def loaded_models(self) -> list:
        """Every loaded model version, by name then version."""
        return [m for e in sorted(self.repository.entries.values(), key=lambda e: e.name)
                for _, m in sorted(e.versions.items())]

    # ---- inference ---------------------------------------------------------------------------
    def is_decoupled(self, name: str, version: str = "") -> bool:
        """Whether the model (version) a request names is decoupled; False when it is unknown
        (the request then fails with the usual message)."""
        try:
            return self.repository.get(name, version).decoupled
        except ServerError:
            return False

    def _admit(self):
        if self.shutting_down:
            raise Unavailable("Server is shutting down: new requests are not accepted")
        if self.max_inflight and self.inflight >= self.max_inflight:
            raise Unavailable(f"Server is at its limit of {self.max_inflight} concurrent requests")

    @contextlib.contextmanager
    def _external(self):
        """An external request admitted and counted in flight while it runs."""
        self._admit()
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    def _prepare(self, wire: WireRequest, model, start: int, is_cancelled) -> InferRequest:
        try:
            request = tensor_io.prepare(wire, model, self.shm)
        except ServerError:
            model.stats.request_done(False, time.monotonic_ns() - start)
            raise
        request.is_cancelled = is_cancelled
        if log.isEnabledFor(logging.DEBUG):  # (the shapes' dict is built only when logged)
            log.debug("request %r for %s: inputs %s", request.id, model.describe(),
                      {n: list(a.shape) for n, a in request.inputs.items()})
        return request

    async def infer_request(self, wire: WireRequest, is_cancelled=None,
                            decoupled_error: str = GRPC_DECOUPLED) -> InferResult:
        """An external request (gRPC, HTTP): admission, validation, run, outputs placed. A
        decoupled model is refused with `decoupled_error` (its responses need a stream)."""
        with self._external():
            model = self.repository.get(wire.model_name, wire.model_version)
            if model.decoupled:
                raise Unsupported(decoupled_error)
            start = time.monotonic_ns()
            request = self._prepare(wire, model, start, is_cancelled)
            response = await self._run(model, request, start)
            return InferResult(response.model_name, response.model_version, request.id, response.parameters,
                               tensor_io.outputs(response, request, model, self.shm))

    async def stream_request(self, wire: WireRequest, is_cancelled=None):
        """An external request on a stream (ModelStreamInfer): yields (item, final) pairs, item an
        InferResult, a ServerError (an error response) or None (a final flag sent alone). A
        model that is not decoupled answers once, final; a failure before the model runs raises."""
        model = self.repository.get(wire.model_name, wire.model_version)
        if not model.decoupled:  # (infer_request admits and validates it)
            yield await self.infer_request(wire, is_cancelled), True
            return
        with self._external():
            start = time.monotonic_ns()
            request = self._prepare(wire, model, start, is_cancelled)
            async for item, final in self._stream(model, request, start):
                if isinstance(item, InferResponse):
                    try:
                        item = InferResult(model.name, model.version_str, request.id, item.parameters,
                                           tensor_io.outputs(item, request, model, self.shm, partial=True))
                    except ServerError as e:
                        item = e
                yield item, final

    async def infer(self, request: InferRequest, decoupled_error: ServerError | None = None) -> InferResponse:
        """Internal requests (ensemble steps, BLS): validated like external ones. A decoupled model
        is refused with `decoupled_error` (the caller's wording) or the core's."""
        model = self.repository.get(request.model_name, request.model_version)
        if model.decoupled:
            raise decoupled_error or Unsupported(
                f"model '{model.name}' is decoupled: its responses can only be streamed "
                f"(ModelStreamInfer, or BLS exec(decoupled=True))")
        start = time.monotonic_ns()
        self._check_internal(model, request, start)
        return await self._run(model, request, start)

    async def infer_stream(self, request: InferRequest):
        """An internal request whose responses stream (BLS exec(decoupled=True)): yields (item,
        final) pairs as stream_request does, with InferResponse items."""
        model = self.repository.get(request.model_name, request.model_version)
        if not model.decoupled:
            yield await self.infer(request), True
            return
        start = time.monotonic_ns()
        self._check_internal(model, request, start)
        async for pair in self._stream(model, request, start):
            yield pair

    def _check_internal(self, model, request: InferRequest, start: int):
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

    async def _stream(self, model, request: InferRequest, start: int):
        """Run a decoupled request and yield its responses as the model sends them. Statistics
        are Triton's for decoupled Python models: the request succeeds when execute returns."""
        stream = decoupled.ResponseStream(self.loop)
        request.responses = stream
        task = asyncio.ensure_future(self._run(model, request, start))
        task.add_done_callback(stream.execution_done)
        async for pair in stream:
            yield pair

    async def _run(self, model, request, start):
        entry = self.repository.entries[model.name]
        entry.in_flight += 1
        entry.idle.clear()
        ok = False
        reason = "BACKEND"  # metrics' failure reason: the model's execution failed
        try:
            response = await model.infer(request)
            response.model_name = model.name
            response.model_version = model.version_str
            response.id = request.id
            ok = True
            return response
        except asyncio.CancelledError:
            reason = "CANCELED"
            raise
        except ServerError as e:
            reason = e.reason or ("CANCELED" if isinstance(e, Cancelled) else "BACKEND")
            raise
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
                model.stats.request_done(False, total, reason=reason)

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

"""The gRPC face of the core: `inference.GRPCInferenceService`, one thin method per RPC over
backend/grpc_codec.py. Errors become gRPC statuses in one place (`_rpc`)."""

import asyncio
import functools
import logging

import grpc

from proto import grpc_service_pb2 as pb
from proto import grpc_service_pb2_grpc as pb_grpc

from . import grpc_codec as codec
from . import grpc_wire
from .core import InferenceCore
from .grpc_stream import StreamCall
from .errors import InvalidArgument, ServerError, Unavailable, Unsupported
from .restrictions import Restrictions

log = logging.getLogger("backend.grpc")

# API groups of --grpc-restricted-protocol (Triton's names) per RPC.
GROUPS = {
    "ServerLive": "health", "ServerReady": "health", "ModelReady": "health",
    "ServerMetadata": "metadata", "ModelMetadata": "metadata", "ModelConfig": "model-config",
    "ModelInfer": "inference", "ModelStreamInfer": "inference",
    "ModelStatistics": "statistics",
    "RepositoryIndex": "model-repository", "RepositoryModelLoad": "model-repository",
    "RepositoryModelUnload": "model-repository",
    "SystemSharedMemoryStatus": "shared-memory", "SystemSharedMemoryRegister": "shared-memory",
    "SystemSharedMemoryUnregister": "shared-memory", "CudaSharedMemoryStatus": "shared-memory",
    "CudaSharedMemoryRegister": "shared-memory", "CudaSharedMemoryUnregister": "shared-memory",
    "TraceSetting": "trace", "LogSettings": "logging",
}


def _check_restricted(restrictions: Restrictions, rpc: str, context):
    if not restrictions.required:  # (most servers: no metadata to read)
        return
    key = restrictions.missing(GROUPS[rpc], dict(context.invocation_metadata() or ()))
    if key is not None:
        raise Unavailable(f"This protocol is restricted, expecting header '{key}'")


class Malformed:
    """A request whose protobuf bytes did not parse; its handler answers INVALID_ARGUMENT."""

    def __init__(self, rpc: str, error: Exception):
        self.message = f"could not parse the {rpc} request: {error}"


def _tolerant(parse, rpc: str):
    def deserialize(data):
        try:
            return parse(data)
        except Exception as e:  # DecodeError: grpc would answer UNKNOWN and log a traceback
            return Malformed(rpc, e)
    return deserialize


_INFER_RPCS = ("ModelInfer", "ModelStreamInfer")


class _Capture:
    """Stands in for the server to receive the generated code's method handlers."""

    def add_generic_rpc_handlers(self, handlers):
        pass

    def add_registered_method_handlers(self, service, handlers):
        self.service, self.handlers = service, handlers


def add_to_server(servicer, server):
    """Register `servicer` as the generated add_*_to_server does, except that a request that does
    not parse reaches its handler as `Malformed` instead of escaping grpc as UNKNOWN."""
    cap = _Capture()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, cap)
    handlers = {rpc: h._replace(request_deserializer=_tolerant(h.request_deserializer, rpc))
                for rpc, h in cap.handlers.items()}
    for rpc in _INFER_RPCS:  # tensors stay out of protobuf's copies (grpc_wire)
        handlers[rpc] = handlers[rpc]._replace(request_deserializer=_tolerant(grpc_wire.parse_infer_request, rpc),
                                               response_serializer=grpc_wire.serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(cap.service, handlers),))
    server.add_registered_method_handlers(cap.service, handlers)


def _rpc(fn):
    """Run a handler: check restrictions, map ServerError to its status, never leak UNKNOWN."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self, request, context):
        try:
            _check_restricted(self.restrictions, name, context)
            if isinstance(request, Malformed):
                raise InvalidArgument(request.message)
            return await fn(self, request, context)
        except ServerError as e:
            await context.abort(e.grpc_code, e.message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            log.exception("%s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}: {type(e).__name__}: {e}")
    return wrapper


def _one_repository(request):
    if request.repository_name:
        raise Unsupported("the server has one repository: 'repository_name' must be empty")


def _repository_params(request) -> dict:
    """RepositoryModelLoad/Unload parameters as plain values (one repository only)."""
    _one_repository(request)
    return codec.param_dict(request.parameters)


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore, restrictions: Restrictions | None = None):
        self.core = core
        self.restrictions = restrictions or Restrictions()

    @_rpc
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.core.live)

    @_rpc
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.core.server_ready())

    @_rpc
    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version))

    @_rpc
    async def ServerMetadata(self, request, context):
        return codec.server_metadata(self.core.server_metadata())

    @_rpc
    async def ModelMetadata(self, request, context):
        return codec.model_metadata(self.core.model_metadata(request.name, request.version))

    @_rpc
    async def ModelConfig(self, request, context):
        return codec.model_config(self.core.model_config(request.name, request.version))

    @_rpc
    async def ModelStatistics(self, request, context):
        return codec.statistics(self.core.statistics(request.name, request.version))

    @_rpc
    async def ModelInfer(self, request, context):
        return codec.encode_response(await self.core.infer_request(codec.decode_request(request), context.cancelled))

    async def ModelStreamInfer(self, request_iterator, context):
        try:
            _check_restricted(self.restrictions, "ModelStreamInfer", context)
        except ServerError as e:
            await context.abort(e.grpc_code, e.message)
        async for response in StreamCall(self.core, request_iterator, context, Malformed).responses():
            yield response

    @_rpc
    async def RepositoryIndex(self, request, context):
        resp = pb.RepositoryIndexResponse()
        _one_repository(request)
        for name, version, state, reason in self.core.repository.index(request.ready):
            resp.models.add(name=name, version=version, state=state, reason=reason)
        return resp

    @_rpc
    async def RepositoryModelLoad(self, request, context):
        await self.core.load(request.model_name, _repository_params(request))
        return pb.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(self, request, context):
        await self.core.unload(request.model_name, _repository_params(request))
        return pb.RepositoryModelUnloadResponse()

    @_rpc
    async def SystemSharedMemoryStatus(self, request, context):
        resp = pb.SystemSharedMemoryStatusResponse()
        for r in self.core.shm.status(request.name):
            resp.regions[r.name].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                name=r.name, key=r.key, offset=r.offset, byte_size=r.byte_size))
        return resp

    @_rpc
    async def SystemSharedMemoryRegister(self, request, context):
        self.core.shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @_rpc
    async def SystemSharedMemoryUnregister(self, request, context):
        self.core.shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    @_rpc
    async def CudaSharedMemoryStatus(self, request, context):
        if request.name:
            raise Unsupported("CUDA shared memory is not supported by this server")
        return pb.CudaSharedMemoryStatusResponse()

    @_rpc
    async def CudaSharedMemoryRegister(self, request, context):
        raise Unsupported("CUDA shared memory is not supported by this server (no GPU support)")

    @_rpc
    async def CudaSharedMemoryUnregister(self, request, context):
        if request.name:
            raise Unsupported("CUDA shared memory is not supported by this server")
        return pb.CudaSharedMemoryUnregisterResponse()  # perf_analyzer clears all regions at start

    @_rpc
    async def TraceSetting(self, request, context):
        raise Unsupported("TraceSetting is not supported by this server (no 'trace' extension)")

    @_rpc
    async def LogSettings(self, request, context):
        raise Unsupported("LogSettings is not supported by this server (no 'logging' extension)")


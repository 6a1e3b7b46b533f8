"""The HTTP/REST face of the core (KServe v2 + Triton's extensions), on aiohttp in the server's
event loop: one thin handler per endpoint over backend/http_codec.py. Errors become
`{"error": "<message>"}` with the status their class names, in one place (the middleware)."""

import json
import logging

from aiohttp import web

from . import http_codec as codec, tensor_io
from .core import HTTP_DECOUPLED, InferenceCore
from .errors import Forbidden, InvalidArgument, NotFound, ServerError, Unsupported
from .restrictions import Restrictions

log = logging.getLogger("backend.http")

_MODEL = r"/v2/models/{model}"
_VERSIONED = (_MODEL, _MODEL + r"/versions/{version}")


def _json(value, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(value, separators=(",", ":")).encode(), status=status,
                        content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _body(request, limit: int):
    """The request body: read straight into one buffer of Content-Length bytes (aiohttp's read()
    grows a bytearray and copies it to bytes: three copies of a 12 MB tensor), or through aiohttp
    when the length is not known or the body is compressed (it decompresses gzip and deflate:
    tritonclient's request compression)."""
    length = request.content_length
    try:
        if length is None or request.headers.get("Content-Encoding", "identity") != "identity":
            return await request.read()
        if length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        buf = bytearray(length)
        view = memoryview(buf)
        pos = 0
        async for chunk in request.content.iter_any():
            if pos + len(chunk) > length:
                raise InvalidArgument("the request body is longer than its Content-Length")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if pos != length:
            raise InvalidArgument(f"the request body ended after {pos} of its {length} bytes")
        # read-only, as gRPC's bytes: a model that writes into an input gets its own copy
        # (pb_utils), so an ensemble's other steps never see the change
        return view.toreadonly()
    except (web.HTTPException, ServerError):
        raise
    except Exception as e:  # aiohttp's RequestPayloadError: a body that does not decode
        # (its text is "400, message:\n  <reason>": the reason is the last line)
        raise InvalidArgument(f"could not read the request body: {str(e).splitlines()[-1].strip()}") from None


class HttpService:
    def __init__(self, core: InferenceCore, restrictions: Restrictions | None = None,
                 max_request_bytes: int = 2**31 - 1):
        self.core = core
        self.restrictions = restrictions or Restrictions(flag="--http-restricted-api")
        self.max_request_bytes = max_request_bytes
        self.app = web.Application(client_max_size=max_request_bytes, middlewares=[self._errors])
        self._routes()

    # ---- routing -------------------------------------------------------------------------------
    def _routes(self):
        r = self.app.router
        add = self._add
        add(r, "GET", "/v2", "metadata", self.server_metadata)
        add(r, "GET", "/v2/health/live", "health", self.live)
        add(r, "GET", "/v2/health/ready", "health", self.ready)
        add(r, "GET", "/v2/models/stats", "statistics", self.stats)
        for base in _VERSIONED:
            add(r, "GET", base, "metadata", self.model_metadata)
            add(r, "GET", base + "/ready", "health", self.model_ready)
            add(r, "GET", base + "/config", "model-config", self.model_config)
            add(r, "GET", base + "/stats", "statistics", self.stats)
            add(r, "POST", base + "/infer", "inference", self.infer)
        add(r, "POST", "/v2/repository/index", "model-repository", self.repository_index)
        add(r, "POST", "/v2/repository/models/{model}/load", "model-repository", self.load)
        add(r, "POST", "/v2/repository/models/{model}/unload", "model-repository", self.unload)
        for kind in ("systemsharedmemory", "cudasharedmemory"):
            add(r, "GET", f"/v2/{kind}/status", "shared-memory", self.shm_status)
            add(r, "GET", f"/v2/{kind}/region/{{region}}/status", "shared-memory", self.shm_status)
            add(r, "POST", f"/v2/{kind}/region/{{region}}/register", "shared-memory", self.shm_register)
            add(r, "POST", f"/v2/{kind}/unregister", "shared-memory", self.shm_unregister)
            add(r, "POST", f"/v2/{kind}/region/{{region}}/unregister", "shared-memory", self.shm_unregister)
        for path in ("/v2/trace/setting", _MODEL + "/trace/setting"):
            add(r, "*", path, "trace", self.unsupported("trace settings", "trace"))
        add(r, "*", "/v2/logging", "logging", self.unsupported("log settings", "logging"))

    def _add(self, router, method, path, group, handler):
        async def guarded(request):
            key = self.restrictions.missing(group, request.headers)  # (aiohttp's: case-insensitive)
            if key is not None:
                raise Forbidden(f"This API is restricted, expecting header '{key}'")
            return await handler(request)
        router.add_route(method, path, guarded)

    @web.middleware
    async def _errors(self, request, handler):
        try:
            return await handler(request)
        except ServerError as e:
            return _error(e.http_status, e.message)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            # aiohttp's own refusals (unknown endpoint, wrong method, body too large) in our format
            reason = {404: f"unknown endpoint '{request.path}'",
                      405: f"method {request.method} is not allowed for '{request.path}'"}.get(e.status, e.text or e.reason)
            return _error(e.status, reason)
        except Exception as e:  # a server bug: say so, keep serving
            log.exception("HTTP %s %s failed", request.method, request.path)
            return _error(500, f"internal error: {type(e).__name__}: {e}")

    # ---- health and metadata -------------------------------------------------------------------
    async def server_metadata(self, request):
        return _json(self.core.server_metadata())

    async def live(self, request):
        return web.Response(status=200 if self.core.live else 400)

    async def ready(self, request):
        return web.Response(status=200 if self.core.server_ready() else 400)

    async def model_ready(self, request):
        m = request.match_info
        return web.Response(status=200 if self.core.model_ready(m["model"], m.get("version", "")) else 400)

    async def model_metadata(self, request):
        m = request.match_info
        return _json(self.core.model_metadata(m["model"], m.get("version", "")))

    async def model_config(self, request):
        m = request.match_info
        return _json(codec.config_json(self.core.model_config(m["model"], m.get("version", ""))))

    async def stats(self, request):
        m = request.match_info
        return _json(self.core.statistics(m.get("model", ""), m.get("version", "")))

    # ---- inference -----------------------------------------------------------------------------
    async def infer(self, request):
        m = request.match_info
        body = await _body(request, self.max_request_bytes)
        wire = codec.decode_infer(m["model"], m.get("version", ""), body,
                                  request.headers.get(codec.HEADER_LENGTH))
        transport = request.transport
        result = await self.core.infer_request(wire, lambda: transport is None or transport.is_closing(),
                                               decoupled_error=HTTP_DECOUPLED)
        header, chunks = codec.encode_infer(result, bool(wire.parameters.get("binary_data_output", False)))
        if not chunks:
            response = web.Response(body=header, content_type="application/json")
            response.enable_compression()
            return response
        # binary extension: the JSON header, then each binary output straight from its array
        response = web.StreamResponse(headers={codec.HEADER_LENGTH: str(len(header)),
                                               "Content-Type": "application/octet-stream"})
        if request.headers.get("Accept-Encoding"):
            response.enable_compression()
        else:
            response.content_length = len(header) + sum(len(c) for c in chunks)
        await response.prepare(request)
        await response.write(header)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    # ---- repository ----------------------------------------------------------------------------
    async def repository_index(self, request):
        body = codec.json_body(await _body(request, self.max_request_bytes), "repository index", default={})
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgument("repository index: 'ready' must be a boolean")
        return _json([{"name": n, "version": v, "state": s, "reason": r}
                      for n, v, s, r in self.core.repository.index(ready)])

    async def load(self, request):
        name = request.match_info["model"]
        body = codec.json_body(await _body(request, self.max_request_bytes), f"load of model '{name}'", default={})
        await self.core.load(name, codec.repository_parameters(body, f"load of model '{name}'"))
        return web.Response(status=200)

    async def unload(self, request):
        name = request.match_info["model"]
        body = codec.json_body(await _body(request, self.max_request_bytes), f"unload of model '{name}'", default={})
        params = codec.repository_parameters(body, f"unload of model '{name}'")
        if not isinstance(params.get("unload_dependents", False), bool):
            raise InvalidArgument("'unload_dependents' must be a boolean")
        await self.core.unload(name, params)
        return web.Response(status=200)

    # ---- shared memory -------------------------------------------------------------------------
    @staticmethod
    def _cuda(request) -> bool:
        return request.path.startswith("/v2/cudasharedmemory")

    async def shm_status(self, request):
        region = request.match_info.get("region", "")
        if self._cuda(request):
            if region:
                raise NotFound(f"Unable to find cuda shared memory region: '{region}'")
            return _json([])
        return _json([{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                      for r in self.core.shm.status(region)])

    async def shm_register(self, request):
        region = request.match_info["region"]
        if self._cuda(request):
            raise Unsupported("CUDA shared memory is not supported by this server (no GPU support)")
        body = codec.json_body(await _body(request, self.max_request_bytes), f"register of shared memory region '{region}'")
        key = body.get("key")
        offset = body.get("offset", 0)
        size = body.get("byte_size")
        if not isinstance(key, str) or not all(tensor_io.is_int(v) for v in (offset, size)):
            raise InvalidArgument("shared memory registration needs 'key' (string), 'offset' and 'byte_size' (integers)")
        self.core.shm.register(region, key, offset, size)
        return web.Response(status=200)

    async def shm_unregister(self, request):
        region = request.match_info.get("region", "")
        if self._cuda(request):
            if region:
                raise Unsupported("CUDA shared memory is not supported by this server")
            return web.Response(status=200)  # perf_analyzer clears all regions at start
        self.core.shm.unregister(region)
        return web.Response(status=200)

    @staticmethod
    def unsupported(what: str, extension: str):
        async def handler(request):
            raise Unsupported(f"{what} are not supported by this server (no '{extension}' extension)")
        return handler

"""Triton's Python backend, in process: runs `<model>/<version>/model.py` (class TritonPythonModel)
unchanged. Each instance gets its own module (no sys.modules clashes between models whose files
are all `1/model.py`) and its own thread; coroutines (`async def execute`, async_exec) run on the
instance's own event loop, in a thread of its own as in Triton's stub. Decoupled models send
their responses through each request's InferenceResponseSender (backend/decoupled.py carries
them to the stream)."""

import asyncio
import functools
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
import types
import weakref

import numpy as np

from .. import config as config_util
from ..errors import BY_TRITON_NAME, Internal, InvalidArgument, ServerError
from ..scheduler import Instance, InstanceModel, InstancePool
from ..types import InferRequest, InferResponse, RequestedOutput, Timing

log = logging.getLogger("backend.python")

STUB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python_stub")
if STUB_DIR not in sys.path:
    sys.path.append(STUB_DIR)  # as Triton puts its backend dir on sys.path
import triton_python_backend_utils as pb_utils  # noqa: E402

_import_lock = threading.Lock()
_counter = 0
_current = threading.local()  # the model directory of the instance running on this thread


class BlsBridge:
    """pb_utils' hook into the server: BLS requests from a model's thread (or its event loop)
    run through the core on the server's loop, validated and counted like any request."""

    def __init__(self, core, loop):
        self.core, self.loop = core, loop

    def _request(self, req):
        params = req.parameters()
        version = req.model_version()
        return InferRequest(
            model_name=req.model_name(), model_version="" if version == -1 else str(version),
            id=req.request_id(), inputs={t.name(): t.as_numpy() for t in req.inputs()},
            outputs=[RequestedOutput(n) for n in req._requested_output_names] or None,
            parameters=json.loads(params) if params else {}, timeout_us=req.timeout())

    async def _infer(self, req):
        # python_backend's refusal of a decoupled model (request_executor.cc), as an error response
        refusal = Internal(
            f"Model {req.model_name()} is using the decoupled. The current BLS request call "
            f"doesn't support models using the decoupled transaction policy. Please use "
            f"'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled models.'")
        try:
            resp = await self.core.infer(self._request(req), decoupled_error=refusal)
        except ServerError as e:
            return _error_response(e)
        return _pb_response(resp)

    def infer(self, req):
        self._not_on_server_loop()
        return self._run(self._infer(req))

    async def async_infer(self, req):
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._infer(req), self.loop))

    def infer_stream(self, req) -> "pb_utils.ResponseIterator":
        """exec(decoupled=True): an iterator fed from the server's loop as responses arrive."""
        cancelled = threading.Event()
        it = pb_utils.ResponseIterator(cancel=cancelled.set)
        asyncio.run_coroutine_threadsafe(self._pump(req, it, cancelled), self.loop)
        return it

    async def async_infer_stream(self, req) -> "pb_utils.ResponseIterator":
        return self.infer_stream(req)

    async def _pump(self, req, it, cancelled):
        try:
            request = self._request(req)
            request.is_cancelled = cancelled.is_set
            async for item, final in self.core.infer_stream(request):
                it._put(_pb_response(item), final)
                if final:
                    return
            it._put(pb_utils.InferenceResponse(), True)  # (a stream always ends with a final item)
        except ServerError as e:
            it._put(_error_response(e), True)
        except Exception as e:  # a server bug: the model still gets its final response
            log.exception("BLS stream to '%s' failed", req.model_name())
            it._put(_error_response(Internal(f"{type(e).__name__}: {e}")), True)

    def _not_on_server_loop(self):
        if threading.current_thread() is threading.main_thread():
            raise pb_utils.TritonModelException("BLS exec() cannot block the server's event loop")

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def load_model(self, model_name, config="", files=None):
        # the RepositoryModelLoad path: explicit mode only, files keyed "file:<path>" (as Triton)
        self._run(self.core.load(model_name, {"config": config, **(files or {})}))

    def unload_model(self, model_name, unload_dependents=False):
        self._run(self.core.unload(model_name, {"unload_dependents": unload_dependents}))

    def is_model_ready(self, model_name, model_version=""):
        return self.core.model_ready(model_name, str(model_version or ""))


def _error_response(err: ServerError):
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(err.message, getattr(pb_utils.TritonError, err.triton_name)))


def _pb_response(item):
    """A BLS response as the calling model sees it: InferResponse, ServerError or None (the
    final flag sent alone: an empty response)."""
    if item is None:
        return pb_utils.InferenceResponse()
    if isinstance(item, ServerError):
        return _error_response(item)
    params = {k: v for k, v in item.parameters.items() if isinstance(v, (bool, int, str))}
    return pb_utils.InferenceResponse([pb_utils.Tensor(n, a) for n, a in item.outputs.items()],
                                      parameters=params)


def install_hooks(core, loop):
    pb_utils._bls = BlsBridge(core, loop)
    pb_utils._model_dir_hook = lambda: getattr(_current, "model_dir", "")


def _code_names():
    return {getattr(pb_utils.TritonError, n): n for n in BY_TRITON_NAME if hasattr(pb_utils.TritonError, n)}


def error_from_triton(err) -> ServerError:
    """pb_utils.TritonError -> the server's error class with the same code."""
    name = _code_names().get(err.code(), "INTERNAL")
    return BY_TRITON_NAME[name](err.message())


def import_model_module(path: str, model_dir: str):
    """Import model.py under a unique package name so that many `1/model.py` coexist; the
    version and model dirs are on sys.path while it imports (Triton's layout) and sibling
    modules it imported are taken out of sys.modules afterwards so the next model gets its own."""
    global _counter
    version_dir = os.path.dirname(path)
    with _import_lock:
        _counter += 1
        pkg_name = f"_triton_model_{_counter}"
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [version_dir]
        sys.modules[pkg_name] = pkg
        before = set(sys.modules)
        added = [d for d in (version_dir, model_dir) if d not in sys.path]
        sys.path[:0] = added
        try:
            spec = importlib.util.spec_from_file_location(f"{pkg_name}.model", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        finally:
            for d in added:
                sys.path.remove(d)
            root = os.path.abspath(model_dir) + os.sep
            for name in set(sys.modules) - before:
                f = getattr(sys.modules[name], "__file__", None) or ""
                if f.startswith(root) and not name.startswith(pkg_name):
                    del sys.modules[name]
    if not hasattr(module, "TritonPythonModel"):
        raise InvalidArgument(f"{path} does not define class TritonPythonModel")
    return module


async def _awaited(awaitable):
    return await awaitable


class PythonInstance(Instance):
    def __init__(self, model_cls, args: dict, model_name: str, output_names, decoupled: bool = False):
        self.name = args["model_instance_name"]
        self.model_dir = args["model_repository"]
        _current.model_dir = self.model_dir
        self.model_name = model_name
        self.output_names = output_names
        self.decoupled = decoupled
        self.loop = None          # the instance's event loop (created for the first coroutine)
        self._loop_thread = None
        self.obj = model_cls()
        init = getattr(self.obj, "initialize", None)
        if init is not None:
            self._call(init, args)
        self._execute = self.obj.execute

    def _event_loop(self):
        """The instance's event loop, running in a thread of its own (Triton's stub does the same):
        coroutines of one instance share it, so a decoupled async execute can overlap the next."""
        if self.loop is None:
            loop = asyncio.new_event_loop()
            model_dir = self.model_dir

            def run():
                _current.model_dir = model_dir
                asyncio.set_event_loop(loop)
                loop.run_forever()
            self._loop_thread = threading.Thread(target=run, name=f"{self.name}-asyncio", daemon=True)
            self._loop_thread.start()
            self.loop = loop
        return self.loop

    def _call(self, fn, *args):
        result = fn(*args)
        if inspect.isawaitable(result):
            result = asyncio.run_coroutine_threadsafe(_awaited(result), self._event_loop()).result()
        return result

    def _failed(self, e: Exception) -> ServerError:
        detail = str(e) if isinstance(e, pb_utils.TritonModelException) else f"{type(e).__name__}: {e}"
        return Internal(f"Failed to process the request(s) for model '{self.name}', message: {detail}")

    def execute(self, requests):
        _current.model_dir = self.model_dir
        t0 = time.monotonic_ns()
        pb_requests = [self._to_pb(r) for r in requests]
        t1 = time.monotonic_ns()
        try:
            responses = self._execute(pb_requests)
            if inspect.isawaitable(responses):
                future = asyncio.run_coroutine_threadsafe(_awaited(responses), self._event_loop())
                if self.decoupled:
                    # As Triton: not awaited; the instance takes the next requests meanwhile.
                    future.add_done_callback(functools.partial(self._background_done, pb_requests))
                    responses = None
                else:
                    responses = future.result()
            t2 = time.monotonic_ns()
            if self.decoupled:
                if responses is not None:
                    raise pb_utils.TritonModelException(
                        f"Python model '{self.name}' is using the decoupled mode and the execute "
                        f"function must return None.")
                # Done with these requests: their responses come through their senders.
                out = [InferResponse(self.model_name, "", r.id) for r in requests]
            else:
                out = self._returned(requests, pb_requests, responses)
        except Exception as e:
            err = self._failed(e)
            log.warning("%s", err.message)
            for pb_req in pb_requests:
                pb_req.get_response_sender()._close()  # as Triton: no responses after a failure
                getattr(pb_req, "_ended", []).append(True)  # the core ends these requests
            return [err] * len(requests), Timing(0, t1 - t0, time.monotonic_ns() - t1, 0)
        return out, Timing(0, t1 - t0, t2 - t1, time.monotonic_ns() - t2)

    def _returned(self, requests, pb_requests, responses):
        """What a non-decoupled execute returned, checked as Triton checks it; a None entry (or
        None for all) is a request answered through its response sender."""
        if responses is None:
            responses = [None] * len(requests)
        if not isinstance(responses, list):
            raise pb_utils.TritonModelException(
                f"Expected a list in the execute return, found type '{type(responses).__name__}'.")
        if len(responses) != len(requests):
            raise pb_utils.TritonModelException(
                f"Number of InferenceResponse objects do not match the number of InferenceRequest "
                f"objects. InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) size "
                f"is:{len(responses)}")
        out = []
        for req, pb_req, resp in zip(requests, pb_requests, responses):
            if resp is None:
                resp = pb_req.get_response_sender()._response
                if resp is None:
                    out.append(Internal(f"Failed to process the request(s) for model '{self.name}', "
                                        f"message: no response was returned or sent for request "
                                        f"'{req.id}'"))
                    continue
            out.append(self._from_pb(req, resp))
        return out

    def _background_done(self, pb_requests, future):
        """A decoupled async execute finished in the background: an exception is logged (as
        Triton does) and ends every request still open with it (Triton would leave them open)."""
        if future.cancelled() or future.exception() is None:
            return
        e = future.exception()
        log.error("%s", "".join(traceback.format_exception(e)))
        err = self._failed(e)
        for pb_req in pb_requests:
            sender = pb_req.get_response_sender()
            if sender._close():
                sender._sink(err, True)

    def _to_pb(self, req):
        tensors = [pb_utils.Tensor(name, arr) for name, arr in req.inputs.items()]
        names = req.requested_names(self.output_names)
        pb_req = pb_utils.InferenceRequest(
            model_name=self.model_name, requested_output_names=names, inputs=tensors,
            request_id=req.id, parameters=json.dumps(_jsonable(req.parameters)) if req.parameters else "{}",
            timeout=req.timeout_us)
        pb_req._cancel_check = req.is_cancelled
        if not self.decoupled:
            pb_req._sender = pb_utils.InferenceResponseSender(None, False, pb_req.is_cancelled)
            return pb_req
        ended = pb_req._ended = []  # non-empty once the request's final item was queued
        # (no reference back to pb_req: the sender is freed, and its finalizer runs, when the
        # model lets go of it)
        pb_req._sender = pb_utils.InferenceResponseSender(
            functools.partial(self._send, req, ended), True,
            functools.partial(_cancelled, pb_req._cancelled, req.is_cancelled))
        weakref.finalize(pb_req._sender, self._sender_dropped, req, ended)
        return pb_req

    def _sender_dropped(self, req, ended):
        """The model let go of a request's sender without the final flag: the request ends (with
        the flag alone) rather than keep its stream waiting forever (Triton's would)."""
        if not ended:
            log.warning("model '%s': the response sender of request '%s' was dropped without the final "
                        "flag: the request ends here", self.model_name, req.id)
            req.responses.send(None, True)

    def _send(self, req, ended, response, final):
        """A decoupled model sent a response (from whichever thread): pruned to the requested
        outputs and copied (the model may reuse its arrays once send returns), then queued."""
        if final:
            ended.append(True)
        if response is not None and not isinstance(response, ServerError):
            response = self._response(req, response, set(req.requested_names(self.output_names)), copy=True)
        req.responses.send(response, final)

    def _from_pb(self, req, resp):
        if not isinstance(resp, pb_utils.InferenceResponse):
            raise pb_utils.TritonModelException(
                f"Expected an 'InferenceResponse' object in the execute function return list, found "
                f"type '{type(resp).__name__}'.")
        wanted = set(req.requested_names(self.output_names))
        response = self._response(req, resp, wanted, copy=False)
        if isinstance(response, InferResponse):
            missing = wanted - set(response.outputs)
            if missing:  # (checked here only: a decoupled model's responses may each carry some)
                return Internal(f"model '{self.model_name}' did not return output(s) "
                                f"{', '.join(sorted(missing))}")
        return response

    def _response(self, req, resp, wanted: set, copy: bool):
        """A pb_utils.InferenceResponse as the server's: its error, or its requested outputs (pruned
        as Triton does, PruneOutputTensors; copied when the model may reuse the arrays)."""
        if resp.has_error():
            return error_from_triton(resp.error())
        outputs = {t.name(): np.array(t.as_numpy()) if copy else t.as_numpy()
                   for t in resp.output_tensors() if t.name() in wanted}
        return InferResponse(self.model_name, "", req.id, outputs, _parameters(resp))

    def close(self):
        fin = getattr(self.obj, "finalize", None)
        try:
            if fin is not None:
                self._call(fin)
        finally:
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._loop_thread.join(5)
                if not self._loop_thread.is_alive():
                    self.loop.close()
            # The model object goes now: what it holds (custom metrics...) is released.
            self.obj = self._execute = None


def _cancelled(flag, check) -> bool:
    return flag.is_set() or (check is not None and bool(check()))


def _parameters(resp) -> dict:
    params = resp.parameters()
    if params == "{}":  # (most responses: no JSON to parse)
        return {}
    return dict(json.loads(params)) if isinstance(params, str) and params else dict(params or {})


def _jsonable(params: dict) -> dict:
    return {k: v for k, v in params.items() if isinstance(v, (bool, int, float, str))}


def auto_complete(module, config):
    """Run TritonPythonModel.auto_complete_config on the config, if the model defines it."""
    fn = getattr(module.TritonPythonModel, "auto_complete_config", None)
    if fn is None:
        return config
    from google.protobuf import json_format
    from proto import model_config_pb2 as mc
    wrapped = pb_utils.ModelConfig(config_util.to_json(config))
    result = fn(wrapped)
    completed = (result if result is not None else wrapped).as_dict()
    new = mc.ModelConfig()
    json_format.ParseDict(completed, new, ignore_unknown_fields=True)
    return new


def load(config, version: int, model_dir: str, version_dir: str, execution_timeout_s: float = 0,
         auto_complete_config: bool = True):
    filename = config.default_model_filename or "model.py"
    path = os.path.join(version_dir, filename)
    if not os.path.isfile(path):
        raise InvalidArgument(f"unable to find '{path}' for model '{config.name}'")
    module = import_model_module(path, model_dir)
    if auto_complete_config:  # off with --disable-auto-complete-config
        completed = auto_complete(module, config)
        if completed is not config:
            config.CopyFrom(completed)
    config_json = config_util.to_json(config)
    output_names = [o.name for o in config.output]
    from proto import model_config_pb2 as mc
    factories = []
    for name, group, device in config_util.instance_placements(config):
        args = {
            "model_config": config_json,
            "model_instance_kind": mc.ModelInstanceGroup.Kind.Name(group.kind).replace("KIND_", ""),
            "model_instance_name": name,
            "model_instance_device_id": str(device),
            "model_repository": model_dir,
            "model_version": str(version),
            "model_name": config.name,
        }
        # initialize() runs on the instance's own thread, where execute() and finalize() will.
        factories.append((name, functools.partial(PythonInstance, module.TritonPythonModel, args,
                                                  config.name, output_names,
                                                  config.model_transaction_policy.decoupled)))
    pool = InstancePool(factories)
    return InstanceModel(config, version, model_dir, pool, execution_timeout_s)


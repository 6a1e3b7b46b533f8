"""Triton's Python backend, in process: runs `<model>/<version>/model.py` (class TritonPythonModel)
unchanged. Each instance gets its own module (no sys.modules clashes between models whose files
are all `1/model.py`) and its own thread; `async def execute` runs on the instance's event loop."""

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
import types

from .. import config as config_util
from ..errors import BY_TRITON_NAME, Internal, InvalidArgument, ServerError, Unsupported
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
        try:
            resp = await self.core.infer(self._request(req))
        except ServerError as e:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(e.message, getattr(pb_utils.TritonError, e.triton_name)))
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, a) for n, a in resp.outputs.items()])

    def infer(self, req):
        if threading.current_thread() is threading.main_thread():
            raise pb_utils.TritonModelException("BLS exec() cannot block the server's event loop")
        return self._run(self._infer(req))

    async def async_infer(self, req):
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._infer(req), self.loop))

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def load_model(self, model_name, config="", files=None):
        # the RepositoryModelLoad path: explicit mode only, files keyed "file:<path>" (as Triton)
        self._run(self.core.load(model_name, {"config": config, **(files or {})}))

    def unload_model(self, model_name, unload_dependents=False):
        self._run(self.core.unload(model_name, {"unload_dependents": unload_dependents}))

    def is_model_ready(self, model_name, model_version=""):
        return self.core.model_ready(model_name, str(model_version or ""))


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


class PythonInstance(Instance):
    def __init__(self, model_cls, args: dict, model_name: str, output_names):
        self.name = args["model_instance_name"]
        self.model_dir = args["model_repository"]
        _current.model_dir = self.model_dir
        self.model_name = model_name
        self.output_names = output_names
        self.loop = None
        self.obj = model_cls()
        init = getattr(self.obj, "initialize", None)
        if init is not None:
            self._call(init, args)
        self._execute = self.obj.execute

    def _call(self, fn, *args):
        result = fn(*args)
        if inspect.isawaitable(result):
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            result = self.loop.run_until_complete(result)
        return result

    def execute(self, requests):
        _current.model_dir = self.model_dir
        t0 = time.monotonic_ns()
        pb_requests = [self._to_pb(r) for r in requests]
        t1 = time.monotonic_ns()
        try:
            responses = self._call(self._execute, pb_requests)
        except Exception as e:
            err = Internal(f"Failed to process the request(s) for model '{self.name}', message: "
                           f"{type(e).__name__}: {e}" if not isinstance(e, pb_utils.TritonModelException)
                           else f"Failed to process the request(s) for model '{self.name}', message: {e}")
            log.warning("%s", err.message)
            return [err] * len(requests), Timing(0, t1 - t0, time.monotonic_ns() - t1, 0)
        t2 = time.monotonic_ns()
        if not isinstance(responses, list):
            err = Internal(f"Failed to process the request(s) for model '{self.name}', message: "
                           f"Expected a list in the execute return, found type '{type(responses).__name__}'.")
            return [err] * len(requests), Timing(0, t1 - t0, t2 - t1, 0)
        if len(responses) != len(requests):
            err = Internal(
                f"Failed to process the request(s) for model '{self.name}', message: Number of "
                f"InferenceResponse objects do not match the number of InferenceRequest objects. "
                f"InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) size is:"
                f"{len(responses)}")
            return [err] * len(requests), Timing(0, t1 - t0, t2 - t1, 0)
        out = [self._from_pb(req, resp) for req, resp in zip(requests, responses)]
        return out, Timing(0, t1 - t0, t2 - t1, time.monotonic_ns() - t2)

    def _to_pb(self, req):
        tensors = [pb_utils.Tensor(name, arr) for name, arr in req.inputs.items()]
        names = req.requested_names(self.output_names)
        pb_req = pb_utils.InferenceRequest(
            model_name=self.model_name, requested_output_names=names, inputs=tensors,
            request_id=req.id, parameters=json.dumps(_jsonable(req.parameters)),
            timeout=req.timeout_us)
        if req.is_cancelled is not None and req.is_cancelled():
            pb_req._set_cancelled()
        return pb_req

    def _from_pb(self, req, resp):
        if resp is None or not hasattr(resp, "output_tensors"):
            return Internal(f"Failed to process the request(s) for model '{self.name}', message: "
                            f"expected an InferenceResponse, got {type(resp).__name__}")
        if resp.has_error():
            return error_from_triton(resp.error())
        wanted = set(req.requested_names(self.output_names))
        outputs = {}
        for t in resp.output_tensors():
            if t.name() in wanted:  # pruned as Triton does (PruneOutputTensors)
                outputs[t.name()] = t.as_numpy()
        missing = wanted - set(outputs)
        if missing:
            return Internal(f"model '{self.model_name}' did not return output(s) "
                            f"{', '.join(sorted(missing))}")
        params = resp.parameters() if hasattr(resp, "parameters") else None
        params = json.loads(params) if isinstance(params, str) and params else (params or {})
        return InferResponse(self.model_name, "", req.id, outputs, dict(params))

    def close(self):
        fin = getattr(self.obj, "finalize", None)
        if fin is not None:
            self._call(fin)
        if self.loop is not None:
            self.loop.close()


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


def load(config, version: int, model_dir: str, version_dir: str, execution_timeout_s: float = 0):
    filename = config.default_model_filename or "model.py"
    path = os.path.join(version_dir, filename)
    if not os.path.isfile(path):
        raise InvalidArgument(f"unable to find '{path}' for model '{config.name}'")
    module = import_model_module(path, model_dir)
    completed = auto_complete(module, config)
    if completed is not config:
        config.CopyFrom(completed)
    if config.model_transaction_policy.decoupled:
        # Until responses can stream back, a decoupled model would load READY and fail every request.
        raise Unsupported(f"model '{config.name}' uses the decoupled transaction policy, which this "
                          f"server does not support yet")
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
                                                  config.name, output_names)))
    pool = InstancePool(factories)
    return InstanceModel(config, version, model_dir, pool, execution_timeout_s)


"""Triton's Python backend API (`import triton_python_backend_utils as pb_utils`), pure Python + numpy.

Python-backend models run in-process: the server puts this directory on sys.path, builds
`InferenceRequest`s, calls `TritonPythonModel.execute` and reads the `InferenceResponse`s back.
Names, signatures, defaults and error messages follow python_backend (`pb_stub.cc` bindings and
`src/resources/triton_python_backend_utils.py`), so a model written for Triton runs unchanged.

Names, ids and output names may be given as bytes (UTF-8), as Triton's bindings take them.

Server hooks (module globals the server assigns; None outside a server):
  _bls             object with infer(req) -> InferenceResponse, async def async_infer(req),
                   infer_stream(req) -> ResponseIterator, async def async_infer_stream(req),
                   load_model(name, config, files), unload_model(name, unload_dependents),
                   is_model_ready(name, version) -> bool
  _model_dir_hook  callable () -> str, answers get_model_dir() for the calling model
Requests given to `execute` carry their response sender and cancellation check (set by the
server); custom metrics live in the server's registry (backend/custom_metrics.py), which the
metrics endpoint exports.
"""

import asyncio
import enum
import json
import logging
import os
import queue
import sys
import threading
import weakref

import numpy as np

# This module is imported top-level (the server puts its folder on sys.path, as Triton does) but
# shares the server's BYTES codec. `backend` is importable wherever the server runs; for a model
# tested on its own, the folder above backend/ is made importable here.
try:
    from backend import bytes_tensor, custom_metrics
except ImportError:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from backend import bytes_tensor, custom_metrics

_bls = None
_model_dir_hook = None


def _as_str(value, what="argument"):
    """A string argument as Triton's bindings (pybind11 std::string) take it: str, or bytes as
    UTF-8 (e.g. a name read from a BYTES tensor); anything else is a TypeError."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise TypeError(f"{what} must be a str or UTF-8 bytes, got {bytes(value)!r}") from None
    raise TypeError(f"{what} must be a str (or bytes), got {type(value).__name__}")

# --------------------------------------------------------------------------------------------
# Data types

# TRITONSERVER_DataType, numbered as in tritonserver.h.
TRITONSERVER_TYPE_INVALID = 0
TRITONSERVER_TYPE_BOOL = 1
TRITONSERVER_TYPE_UINT8 = 2
TRITONSERVER_TYPE_UINT16 = 3
TRITONSERVER_TYPE_UINT32 = 4
TRITONSERVER_TYPE_UINT64 = 5
TRITONSERVER_TYPE_INT8 = 6
TRITONSERVER_TYPE_INT16 = 7
TRITONSERVER_TYPE_INT32 = 8
TRITONSERVER_TYPE_INT64 = 9
TRITONSERVER_TYPE_FP16 = 10
TRITONSERVER_TYPE_FP32 = 11
TRITONSERVER_TYPE_FP64 = 12
TRITONSERVER_TYPE_BYTES = 13
TRITONSERVER_TYPE_BF16 = 14  # numpy has no bfloat16: no numpy mapping, as in Triton

_TRITON_TO_NUMPY = {
    TRITONSERVER_TYPE_BOOL: np.bool_,
    TRITONSERVER_TYPE_UINT8: np.uint8,
    TRITONSERVER_TYPE_UINT16: np.uint16,
    TRITONSERVER_TYPE_UINT32: np.uint32,
    TRITONSERVER_TYPE_UINT64: np.uint64,
    TRITONSERVER_TYPE_INT8: np.int8,
    TRITONSERVER_TYPE_INT16: np.int16,
    TRITONSERVER_TYPE_INT32: np.int32,
    TRITONSERVER_TYPE_INT64: np.int64,
    TRITONSERVER_TYPE_FP16: np.float16,
    TRITONSERVER_TYPE_FP32: np.float32,
    TRITONSERVER_TYPE_FP64: np.float64,
    TRITONSERVER_TYPE_BYTES: np.object_,
}
_NUMPY_TO_TRITON = {np.dtype(t): code for code, t in _TRITON_TO_NUMPY.items()}

# Config-file names; TYPE_BOOL maps to Python's bool exactly as Triton's table does.
TRITON_STRING_TO_NUMPY = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def triton_to_numpy_type(data_type):
    """TRITONSERVER_DataType number -> numpy type (np.object_ for BYTES); None if unknown."""
    return _TRITON_TO_NUMPY.get(data_type)


def numpy_to_triton_type(data_type):
    """numpy dtype or type -> TRITONSERVER_DataType number; None if Triton has no such type.
    np.object_ and fixed-width np.bytes_ ('S<n>') are BYTES."""
    try:
        dtype = np.dtype(data_type)
    except TypeError:
        return None
    if dtype.type in (np.object_, np.bytes_):
        return TRITONSERVER_TYPE_BYTES
    if dtype.byteorder == ">":
        dtype = dtype.newbyteorder("<")
    return _NUMPY_TO_TRITON.get(dtype)


def triton_string_to_numpy(triton_type_string):
    """"TYPE_FP32" -> np.float32 (KeyError for unknown names, as in Triton)."""
    return TRITON_STRING_TO_NUMPY[triton_type_string]


# --------------------------------------------------------------------------------------------
# BYTES tensors: each element is a 4-byte little-endian length followed by its bytes. The wire
# format is the server's own (backend/bytes_tensor.py); here are Triton's names, types and rules.


def _element_bytes(x):
    # bytes pass through untouched; anything else is sent as its UTF-8 text, like Triton.
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    return str(x).encode("utf-8")


def serialize_byte_tensor(input_tensor):
    """np.object_ / np.bytes_ array -> flat np.uint8 array of length-prefixed elements, C order.
    np.bytes_ ('S<n>') drops trailing NULs (numpy semantics), so prefer np.object_."""
    arr = np.asarray(input_tensor)
    if arr.dtype.type not in (np.object_, np.bytes_):
        raise TritonModelException(
            "serialize_byte_tensor expects an np.object_ or np.bytes_ array, got dtype "
            + str(arr.dtype))
    return bytes_tensor.serialize_array(arr, to_bytes=_element_bytes)


def deserialize_bytes_tensor(encoded_tensor):
    """Length-prefixed bytes (bytes, bytearray, memoryview or uint8 array) -> flat np.object_
    array of bytes, C order. A truncated prefix or an element running past the end raises
    TritonModelException. Linear in the buffer size."""
    buf = encoded_tensor
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
    try:
        return bytes_tensor.deserialize(buf)
    except ValueError as e:  # (with any count accepted, only a cut-short buffer)
        raise TritonModelException(str(e)) from None


# --------------------------------------------------------------------------------------------
# Errors


class TritonModelException(Exception):
    """Raised by the API (and by models) for a failure; the server reports it as INTERNAL."""


class _ErrorCode(enum.IntEnum):
    # TRITONSERVER_Error_Code, numbered as in tritonserver.h.
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7


class TritonError:
    """An error to put in an InferenceResponse. `code()` is an int (IntEnum; `.name` gives
    "INVALID_ARG" etc.)."""

    UNKNOWN = _ErrorCode.UNKNOWN
    INTERNAL = _ErrorCode.INTERNAL
    NOT_FOUND = _ErrorCode.NOT_FOUND
    INVALID_ARG = _ErrorCode.INVALID_ARG
    UNAVAILABLE = _ErrorCode.UNAVAILABLE
    UNSUPPORTED = _ErrorCode.UNSUPPORTED
    ALREADY_EXISTS = _ErrorCode.ALREADY_EXISTS
    CANCELLED = _ErrorCode.CANCELLED

    def __init__(self, message, code=_ErrorCode.INTERNAL):
        if message is None or code is None:
            raise TypeError("TritonError(message, code): message and code cannot be None")
        try:
            self._code = _ErrorCode(code)
        except ValueError:
            raise ValueError(f"unknown TritonError code {code!r}") from None
        self._message = str(message)

    def message(self):
        return self._message

    def code(self):
        return self._code

    def __str__(self):
        return self._message

    def __repr__(self):
        return f"TritonError({self._message!r}, TritonError.{self._code.name})"


# --------------------------------------------------------------------------------------------
# Tensors

_DL_CPU = 1  # DLDeviceType kDLCPU


class _CapsuleHolder:
    """Lets numpy consume a bare DLPack capsule (np.from_dlpack only takes producers)."""

    def __init__(self, capsule):
        self._capsule = capsule

    def __dlpack__(self, **_kwargs):
        return self._capsule

    def __dlpack_device__(self):
        return (_DL_CPU, 0)


class Tensor:
    """A named numpy array. A C-contiguous array is kept as is (no copy); others are made
    contiguous; a read-only one (a view of request bytes) is copied when as_numpy() first asks
    for it. np.object_ / np.bytes_ arrays are BYTES."""

    def __init__(self, name, numpy_array):
        name = _as_str(name, "Tensor name")
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        arr = numpy_array if isinstance(numpy_array, np.ndarray) else np.asarray(numpy_array)
        dtype = numpy_to_triton_type(arr.dtype)
        if dtype is None:
            hint = " Please use np.object_ instead." if arr.dtype.kind == "U" else ""
            raise TritonModelException(f"NumPy dtype {arr.dtype} is not supported.{hint}")
        if arr.dtype.byteorder == ">":
            # Tensors travel little-endian; a big-endian array is converted once here.
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        self._name = name
        self._array = arr
        self._dtype = dtype

    def name(self):
        return self._name

    def as_numpy(self):
        # Triton hands models writable arrays (some normalise their input in place); a view of
        # the request's bytes is read-only, so it is copied once, on first use.
        if not self._array.flags.writeable:
            self._array = self._array.copy()
        return self._array

    def shape(self):
        return list(self._array.shape)

    def triton_dtype(self):
        return self._dtype

    def is_cpu(self):
        return True

    def to_dlpack(self):
        """A legacy "dltensor" capsule sharing this tensor's memory. Legacy capsules cannot
        say read-only, so a read-only array (e.g. a view of request bytes) is copied first."""
        if self._dtype == TRITONSERVER_TYPE_BYTES:
            raise TritonModelException("DLPack does not have support for string tensors.")
        arr = self._array if self._array.flags.writeable else self._array.copy()
        return arr.__dlpack__()

    def __dlpack__(self, stream=None, **kwargs):
        if self._dtype == TRITONSERVER_TYPE_BYTES:
            raise TritonModelException("DLPack does not have support for string tensors.")
        if stream is not None:
            raise BufferError("only stream=None is valid for CPU tensors")
        if not kwargs and not self._array.flags.writeable:
            return self.to_dlpack()
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (_DL_CPU, 0)

    @staticmethod
    def from_dlpack(name, dlpack_tensor):
        """Tensor from a DLPack capsule or an object with __dlpack__/__dlpack_device__ (torch,
        numpy, ...), sharing its memory. Only C-contiguous CPU tensors are accepted."""
        name = _as_str(name, "Tensor name")
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        if type(dlpack_tensor).__name__ == "PyCapsule":
            producer = _CapsuleHolder(dlpack_tensor)
        elif hasattr(dlpack_tensor, "__dlpack__") and hasattr(dlpack_tensor, "__dlpack_device__"):
            producer = dlpack_tensor
            device_type = dlpack_tensor.__dlpack_device__()[0]
            if device_type != _DL_CPU:
                raise TritonModelException(
                    f"DLDevice type {int(device_type)} is not supported: this server has CPU "
                    "memory only.")
        else:
            raise TritonModelException(
                "Provided tensor is not supported. Tensor must be a DLPack capsule or have "
                "`__dlpack__` and `__dlpack_device__` attributes")
        try:
            arr = np.from_dlpack(producer)
        except (BufferError, TypeError, ValueError, RuntimeError) as e:
            raise TritonModelException(f"cannot import DLPack tensor: {e}") from e
        if not arr.flags.c_contiguous:
            raise TritonModelException(
                "DLPack tensor is not contiguous. Only contiguous DLPack tensors that are "
                "stored in C-Order are supported.")
        return Tensor(name, arr)

    def __repr__(self):
        return f"Tensor({self._name!r}, shape={self.shape()}, triton_dtype={self._dtype})"


# --------------------------------------------------------------------------------------------
# Requests and responses


class MemoryType(enum.IntEnum):
    # python_backend's PreferredMemory::MemoryType order.
    TRITONSERVER_MEMORY_GPU = 0
    TRITONSERVER_MEMORY_CPU = 1


TRITONSERVER_MEMORY_GPU = MemoryType.TRITONSERVER_MEMORY_GPU
TRITONSERVER_MEMORY_CPU = MemoryType.TRITONSERVER_MEMORY_CPU
_MEMORY_DEFAULT = 2


class PreferredMemory:
    """Where a BLS caller would like its outputs; this server always answers in CPU memory."""

    def __init__(self, preferred_memory_type, preferred_device_id=0):
        if preferred_memory_type is None or preferred_device_id is None:
            raise TypeError("PreferredMemory arguments cannot be None")
        self._type = int(preferred_memory_type)
        self._device_id = int(preferred_device_id)

    @property
    def preferred_memory_type(self):
        return self._type

    @property
    def preferred_device_id(self):
        return self._device_id


class InferenceTrace:
    """Trace handle of a request; tracing is not implemented, so there is no context."""

    def __init__(self, context=None):
        self._context = context or None

    def get_context(self):
        return self._context


def _parameters_json(parameters):
    # Triton accepts a dict of str -> bool/int/str and hands models its JSON text. A JSON
    # string (what the server has after reading gRPC parameters) is accepted as is.
    if parameters is None or parameters == "{}":
        return "{}"
    if isinstance(parameters, str):
        try:
            decoded = json.loads(parameters)
        except ValueError as e:
            raise TritonModelException(f"parameters is not valid JSON: {e}") from None
        if not isinstance(decoded, dict):
            raise TritonModelException("parameters JSON must be an object")
        return parameters
    if not isinstance(parameters, dict):
        raise TritonModelException(
            f"Expect dict, got {type(parameters)}")
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(
                f"Expect parameters keys to have type str, found type {type(key)}")
        if not isinstance(value, (bool, int, str)):
            raise TritonModelException(
                "Expect parameters values to have type bool/int/str, found type "
                f"{type(value)}")
    return json.dumps(parameters)


def _require_bls():
    if _bls is None:
        raise TritonModelException("BLS is only available inside the server")
    return _bls


class InferenceRequest:
    """A request given to `execute`, or built by a model for BLS (`exec` / `async_exec`).

    Argument order and defaults are Triton's. `model_name()` / `model_version()` are additions
    (Triton keeps them internal) so the server can route BLS requests."""

    def __init__(self, request_id="", correlation_id=0, inputs=None,
                 requested_output_names=None, model_name=None, model_version=-1, flags=0,
                 timeout=0, preferred_memory=None, trace=None, parameters=None):
        if inputs is None or requested_output_names is None or model_name is None:
            raise TypeError(
                "InferenceRequest requires inputs, requested_output_names and model_name")
        if not isinstance(correlation_id, (int, str)) or isinstance(correlation_id, bool):
            raise TritonModelException("Correlation ID must be integer or string")
        if isinstance(requested_output_names, (str, bytes)):
            raise TritonModelException("requested_output_names must be a list of names")
        requested_output_names = [_as_str(n, "requested output name") for n in requested_output_names]
        inputs = list(inputs)
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TritonModelException(
                    f"InferenceRequest inputs must be pb_utils.Tensor, found {type(t)}")
        self._request_id = _as_str(request_id, "request_id")
        self._correlation_id = correlation_id
        self._inputs = inputs
        # Ordered and de-duplicated; Triton hands models a set.
        self._requested_output_names = tuple(dict.fromkeys(requested_output_names))
        self._model_name = _as_str(model_name, "model_name")
        self._model_version = int(model_version)
        self._flags = int(flags)
        self._timeout = int(timeout)
        self._preferred_memory = (preferred_memory if preferred_memory is not None
                                  else PreferredMemory(_MEMORY_DEFAULT, 0))
        self._trace = trace if trace is not None else InferenceTrace()
        self._parameters = _parameters_json(parameters)
        self._cancelled = threading.Event()
        self._cancel_check = None  # server side: callable telling whether the client gave up
        self._sender = None        # server side: the InferenceResponseSender of this request
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    def inputs(self):
        return self._inputs

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        return self._correlation_id

    def flags(self):
        return self._flags

    def set_flags(self, flags):
        self._flags = int(flags)

    def timeout(self):
        return self._timeout

    def parameters(self):
        return self._parameters

    def trace(self):
        return self._trace

    def requested_output_names(self):
        return set(self._requested_output_names)

    def model_name(self):
        return self._model_name

    def model_version(self):
        return self._model_version

    def preferred_memory(self):
        return self._preferred_memory

    def is_cancelled(self):
        if self._cancelled.is_set():
            return True
        return self._cancel_check is not None and bool(self._cancel_check())

    def _set_cancelled(self):
        """Server side: the client went away or cancelled."""
        self._cancelled.set()

    def get_response_sender(self):
        """The sender of this request's responses (the same object every call). A request the
        model built itself (BLS) has one that cannot send, as in Triton."""
        if self._sender is None:
            self._sender = InferenceResponseSender(is_cancelled=self.is_cancelled)
        return self._sender

    def set_release_flags(self, flags):
        self._release_flags = int(flags)

    def release_flags(self):
        """Server side: TRITONSERVER_REQUEST_RELEASE_ALL unless the model asked otherwise."""
        return self._release_flags

    def exec(self, decoupled=False):
        """Run this request on another model (BLS) and wait for its InferenceResponse; a
        failure is reported through the response's error(), not raised. decoupled=True: a
        ResponseIterator over the model's responses (any model; required for decoupled ones)."""
        if decoupled is None:
            raise TypeError("exec(): decoupled cannot be None")
        if decoupled:
            return _require_bls().infer_stream(self)
        return _require_bls().infer(self)

    def async_exec(self, decoupled=False):
        """Awaitable form of exec(), for `async def execute` (decoupled=True: awaits to a
        ResponseIterator, which also iterates with `async for`)."""
        if decoupled is None:
            raise TypeError("async_exec(): decoupled cannot be None")
        if decoupled:
            return _require_bls().async_infer_stream(self)
        return _require_bls().async_infer(self)


class InferenceResponseSender:
    """Sends the responses of one request (`request.get_response_sender()`): any number for a
    decoupled model, ending with flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL (with or without a
    response); exactly one for other models. Usable from any thread, also after execute
    returned. Rules and messages are python_backend's (response_sender.cc)."""

    def __init__(self, sink=None, decoupled=None, is_cancelled=None):
        # sink(response or None, final): server side. decoupled None: a request the model built.
        self._sink = sink
        self._decoupled = decoupled
        self._is_cancelled = is_cancelled
        self._lock = threading.Lock()
        self._closed = False
        self._sent = 0
        self._response = None  # not decoupled: the one response (the server reads it back)

    def send(self, response=None, flags=0):
        if response is not None and not isinstance(response, InferenceResponse):
            raise TypeError(f"send(): response must be a pb_utils.InferenceResponse or None, "
                            f"got {type(response).__name__}")
        if flags != TRITONSERVER_RESPONSE_COMPLETE_FINAL and flags != 0:
            raise TritonModelException("Unable to send response. Unsupported flag provided.")
        if flags == 0 and response is None:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is set to zero.")
        final = flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL
        with self._lock:
            if self._decoupled is None:
                raise TritonModelException(
                    "Unable to send response. Response sender has no reference to the decoupled "
                    "state of the model.")
            if not self._decoupled:
                if response is not None and self._sent > 0:
                    raise TritonModelException(
                        "Unable to send response. Non-decoupled model cannot send more than one "
                        "response.")
                if response is None and final and self._sent == 0:
                    raise TritonModelException(
                        "Unable to send response. Non-decoupled model cannot send complete final "
                        "before sending a response.")
            if self._closed:
                raise TritonModelException("Unable to send response. Response sender has been closed.")
            if final:
                self._closed = True
            self._sent += 1
            if not self._decoupled:
                if response is not None:
                    self._response = response
                return
            # Under the lock: the responses of one request keep the order of the send() calls.
            self._sink(response, final)

    def is_cancelled(self):
        return self._is_cancelled is not None and bool(self._is_cancelled())

    def _close(self):
        """Server side (execute failed): no more responses; True if it was still open."""
        with self._lock:
            was_open = not self._closed
            self._closed = True
            return was_open


class ResponseIterator:
    """The responses of a decoupled BLS request (`exec(decoupled=True)`), in the order the model
    sent them, blocking for each; the last one carries the final flag (an empty response when
    the model sent the flag alone: check `output_tensors()`). Iterating again after the end
    starts over, as in Triton. `cancel()` cancels the request (the model sees is_cancelled())."""

    def __init__(self, cancel=None):
        self._queue = queue.Queue()
        self._responses = []
        self._idx = 0
        self._finished = False
        self._cancel = cancel

    def _put(self, response, final):
        """Server side, from any thread."""
        self._queue.put((response, final))

    def __iter__(self):
        if self._finished and self._idx >= len(self._responses):
            self._idx = 0
        return self

    def __next__(self):
        if self._finished:
            if self._idx < len(self._responses):
                self._idx += 1
                return self._responses[self._idx - 1]
            raise StopIteration
        response, final = self._queue.get()
        self._responses.append(response)
        if final:
            self._finished = True
            self._idx = len(self._responses)
        return response

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._finished or not self._queue.empty():
            return self._next_or_stop()
        # Wait in a worker thread: the model's event loop keeps running meanwhile.
        return await asyncio.get_running_loop().run_in_executor(None, self._next_or_stop)

    def _next_or_stop(self):
        try:
            return self.__next__()
        except StopIteration:
            raise StopAsyncIteration from None

    def cancel(self):
        if not self._finished and self._cancel is not None:
            self._cancel()


class InferenceResponse:
    """What `execute` returns per request: output tensors, or an error."""

    def __init__(self, output_tensors=None, error=None, parameters=None):
        tensors = [] if output_tensors is None else output_tensors
        if not isinstance(tensors, (list, tuple)):
            raise TritonModelException(
                f'"output_tensors" must be a list of pb_utils.Tensor, found {type(tensors)}')
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TritonModelException(
                    f"output_tensors must hold pb_utils.Tensor objects, found {type(t)}")
        if error is not None and not isinstance(error, TritonError):
            raise TritonModelException(
                f'"error" must be a pb_utils.TritonError, found {type(error)}')
        self._output_tensors = list(tensors)
        self._error = error
        self._parameters = _parameters_json(parameters)

    def output_tensors(self):
        return self._output_tensors

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    def parameters(self):
        return self._parameters


# --------------------------------------------------------------------------------------------
# Lookups


def get_input_tensor_by_name(inference_request, name):
    """The input Tensor called `name`, or None."""
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response, name):
    """The output Tensor called `name`, or None."""
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config, name):
    """The config dict of input `name` in a parsed model config, or None."""
    for props in model_config.get("input", ()):
        if props["name"] == name:
            return props
    return None


def get_output_config_by_name(model_config, name):
    """The config dict of output `name` in a parsed model config, or None."""
    for props in model_config.get("output", ()):
        if props["name"] == name:
            return props
    return None


def using_decoupled_model_transaction_policy(model_config):
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


# --------------------------------------------------------------------------------------------
# auto_complete_config


class ModelConfig:
    """The model config handed to `auto_complete_config`; only max_batch_size, scheduler,
    inputs, outputs and transaction policy may be added. Messages are Triton's."""

    def __init__(self, model_config):
        self._model_config = (json.loads(model_config) if isinstance(model_config, str)
                              else model_config)
        self._model_config.setdefault("name", "")
        self._model_config.setdefault("max_batch_size", 0)
        self._model_config.setdefault("input", [])
        self._model_config.setdefault("output", [])

    def as_dict(self):
        return self._model_config

    def _name(self):
        return self._model_config["name"]

    def set_max_batch_size(self, max_batch_size):
        current = self._model_config["max_batch_size"]
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in "
                f"auto-complete-config function for model '{self._name()}' specified "
                f"max_batch_size {max_batch_size}")
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        for scheduler in ("sequence_batching", "ensemble_scheduling"):
            if scheduler in self._model_config:
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{scheduler}', but "
                    f"auto-complete-config function for model '{self._name()}' tries to set "
                    "scheduling_choice as 'dynamic_batching'")
        self._model_config.setdefault("dynamic_batching", {})

    def _add_tensor(self, kind, tensor, valid, valid_text):
        model = self._name()
        if "name" not in tensor:
            raise ValueError(
                f"{kind} in auto-complete-config function for model '{model}' is missing "
                "'name' property.")
        name = tensor["name"]
        for prop in tensor:
            if prop not in valid:
                raise ValueError(
                    f"{kind} '{name}' in auto-complete-config function for model '{model}' "
                    f"contains property other than {valid_text}.")
        for prop in ("data_type", "dims"):
            if prop not in tensor:
                raise ValueError(
                    f"{kind} '{name}' in auto-complete-config function for model '{model}' "
                    f"is missing '{prop}' property.")
        tensor = dict(tensor, dims=list(tensor["dims"]))
        for current in self._model_config[kind]:
            if current["name"] != name:
                continue
            current_type = current.get("data_type", "TYPE_INVALID")
            if current_type != "TYPE_INVALID" and current_type != tensor["data_type"]:
                raise ValueError(
                    f"unable to load model '{model}', configuration expects datatype "
                    f"{current_type} for {kind} '{name}', model provides "
                    f"{tensor['data_type']}")
            if current.get("dims") and list(current["dims"]) != tensor["dims"]:
                raise ValueError(
                    f"model '{model}', tensor '{name}': the model expects dims "
                    f"{tensor['dims']} but the model configuration specifies dims "
                    f"{current['dims']}")
            if ("optional" in current and "optional" in tensor
                    and current["optional"] != tensor["optional"]):
                raise ValueError(
                    f"model '{model}', tensor '{name}': the model expects optional "
                    f"{tensor['optional']} but the model configuration specifies optional "
                    f"{current['optional']}")
            current.update(tensor)
            return
        self._model_config[kind].append(tensor)

    def add_input(self, input):
        self._add_tensor("input", input, ("name", "data_type", "dims", "optional"),
                         "'name', 'data_type', 'dims' and 'optional'")

    def add_output(self, output):
        self._add_tensor("output", output, ("name", "data_type", "dims"),
                         "'name', 'data_type' and 'dims'")

    def set_model_transaction_policy(self, transaction_policy_dict):
        model = self._name()
        for prop in transaction_policy_dict:
            if prop != "decoupled":
                raise ValueError(
                    "model transaction property in auto-complete-config function for model "
                    f"'{model}' contains property other than 'decoupled'.")
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            wanted = transaction_policy_dict["decoupled"]
            if "decoupled" in policy and policy["decoupled"] != wanted:
                raise ValueError(
                    "trying to change decoupled property in auto-complete-config for model "
                    f"'{model}', which is already set to '{policy['decoupled']}'.")
            policy["decoupled"] = wanted


# --------------------------------------------------------------------------------------------
# Logging


class _LogLevel(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_PY_LEVEL = {_LogLevel.INFO: logging.INFO, _LogLevel.WARNING: logging.WARNING,
             _LogLevel.ERROR: logging.ERROR, _LogLevel.VERBOSE: logging.DEBUG}
_logger = logging.getLogger("triton.python_model")


class Logger:
    """Triton's model logger, routed to the Python logger "triton.python_model" (VERBOSE is
    DEBUG). Records carry the calling model's file and line."""

    LogLevel = _LogLevel
    INFO = _LogLevel.INFO
    WARNING = _LogLevel.WARNING
    ERROR = _LogLevel.ERROR
    VERBOSE = _LogLevel.VERBOSE

    @staticmethod
    def log(message, level=_LogLevel.INFO):
        _logger.log(_PY_LEVEL[_LogLevel(level)], "%s", message, stacklevel=2)

    @staticmethod
    def log_info(message):
        _logger.info("%s", message, stacklevel=2)

    @staticmethod
    def log_warn(message):
        _logger.warning("%s", message, stacklevel=2)

    @staticmethod
    def log_error(message):
        _logger.error("%s", message, stacklevel=2)

    @staticmethod
    def log_verbose(message):
        _logger.debug("%s", message, stacklevel=2)


LogLevel = _LogLevel


# --------------------------------------------------------------------------------------------
# Custom metrics: kept in the server's registry (backend/custom_metrics.py) and exported on its
# metrics endpoint with their labels. Messages are Triton's (metric.cc, metric_family.cc).


class MetricKind(enum.IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


COUNTER = MetricKind.COUNTER
GAUGE = MetricKind.GAUGE
HISTOGRAM = MetricKind.HISTOGRAM
_KIND = {MetricKind.COUNTER: custom_metrics.COUNTER, MetricKind.GAUGE: custom_metrics.GAUGE,
         MetricKind.HISTOGRAM: custom_metrics.HISTOGRAM}


class Metric:
    """One labelled series of a MetricFamily (made by MetricFamily.Metric). Metric objects with
    the same labels in one family share the series; it leaves the endpoint with the last one."""

    def __init__(self, family, labels, buckets):
        self._family = family  # keeps the family alive as long as its metrics (Triton's rule)
        try:
            key, self._series = custom_metrics.REGISTRY.series(family._family, labels, buckets)
        except ValueError as e:
            raise TritonModelException(f"Error when creating Metric: {e}") from None
        weakref.finalize(self, custom_metrics.REGISTRY.release_series, family._family, key)

    def _do(self, what, op, *args):
        try:
            return op(*args)
        except (ValueError, TypeError) as e:
            raise TritonModelException(f"Failed to {what} metric value: {e}") from None

    def increment(self, value):
        self._do("increment", self._series.increment, float(value))

    def set(self, value):
        self._do("set", self._series.set, float(value))

    def observe(self, value):
        self._do("observe", self._series.observe, float(value))

    def value(self):
        return self._do("get", self._series.get)


class MetricFamily:
    """MetricFamily(name, description, kind) with .Metric(labels=None, buckets=None). The same
    name and kind (from any model) is the same family; another kind is refused."""

    COUNTER = MetricKind.COUNTER
    GAUGE = MetricKind.GAUGE
    HISTOGRAM = MetricKind.HISTOGRAM

    def __init__(self, name, description, kind):
        if name is None or description is None or kind is None:
            raise TypeError("MetricFamily(name, description, kind): arguments cannot be None")
        self._kind = MetricKind(kind)
        try:
            self._family = custom_metrics.REGISTRY.family(
                _as_str(name, "name"), _as_str(description, "description"), _KIND[self._kind])
        except ValueError as e:
            raise TritonModelException(f"Error when creating MetricFamily: {e}") from None
        weakref.finalize(self, custom_metrics.REGISTRY.release_family, self._family)

    def Metric(self, labels=None, buckets=None):  # noqa: N802 - Triton's name
        if labels is not None and not isinstance(labels, dict):
            raise TritonModelException("Failed to create metric. Labels must be a dictionary.")
        if buckets is not None:
            if not isinstance(buckets, list):
                raise TritonModelException("Failed to create metric. Buckets must be a list.")
            if self._kind != MetricKind.HISTOGRAM:
                raise TritonModelException("Failed to create metric. Unexpected buckets found.")
            buckets = [float(b) for b in buckets]
        elif self._kind == MetricKind.HISTOGRAM:
            raise TritonModelException("Failed to create metric. Missing required buckets.")
        return Metric(self, labels or {}, buckets)


# --------------------------------------------------------------------------------------------
# Model control (BLS) and the model directory


def load_model(model_name, config="", files=None):
    """Load or reload `model_name` on the server (config: JSON override; files: path -> bytes)."""
    if model_name is None or config is None:
        raise TypeError("load_model: model_name and config cannot be None")
    return _require_bls().load_model(_as_str(model_name, "model_name"), _as_str(config, "config"), files)


def unload_model(model_name, unload_dependents=False):
    if model_name is None:
        raise TypeError("unload_model: model_name cannot be None")
    return _require_bls().unload_model(_as_str(model_name, "model_name"), unload_dependents)


def is_model_ready(model_name, model_version=""):
    if model_name is None:
        raise TypeError("is_model_ready: model_name cannot be None")
    return bool(_require_bls().is_model_ready(_as_str(model_name, "model_name"),
                                              _as_str(model_version, "model_version")))


def get_model_dir():
    """Directory of the calling model (as set up by the server)."""
    if _model_dir_hook is None:
        raise TritonModelException("get_model_dir() is only available inside the server")
    return _model_dir_hook()


TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

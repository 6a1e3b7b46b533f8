"""The server's own request/response objects, free of any transport: what the gRPC and HTTP codecs
decode into and encode from (`WireRequest`, `InferResult`), and what every backend, scheduler and
ensemble passes around (`InferRequest`, `InferResponse`). Tensors are numpy arrays (views where
possible)."""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class InputTensor:
    """One input as a protocol delivered it, before validation."""
    name: str
    datatype: str
    shape: tuple
    # The raw tensor bytes (row-major, little-endian; BYTES elements length-prefixed) as a
    # bytes-like object, or None when the input lives in shared memory (see parameters).
    data: object = None
    parameters: dict = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    # System shared memory target: (region name, offset, byte size), or None for raw bytes.
    shm: Optional[tuple] = None
    # The protocol's output parameters (binary_data, classification, shared_memory_*...).
    parameters: dict = field(default_factory=dict)


@dataclass
class WireRequest:
    """An inference request as gRPC or HTTP decoded it: the core validates and resolves it."""
    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)     # [InputTensor]
    outputs: Optional[list] = None                 # [RequestedOutput]; None = all outputs


@dataclass
class OutputTensor:
    """One output of a response, ready for a codec: `array` has the wire datatype's dtype (numpy
    object array of bytes for BYTES), or is None when the bytes went to shared memory."""
    name: str
    datatype: str
    shape: tuple
    array: object = None
    parameters: dict = field(default_factory=dict)  # shared-memory parameters to echo
    requested: Optional[RequestedOutput] = None      # the request's entry, if outputs were named


@dataclass
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: dict = field(default_factory=dict)          # name -> np.ndarray
    input_datatypes: dict = field(default_factory=dict)  # name -> wire datatype ("FP32")
    # None = every output of the model; else only these, in this order.
    outputs: Optional[list] = None
    parameters: dict = field(default_factory=dict)
    timeout_us: int = 0
    # Set by the protocol layer: called to know whether the client gave up.
    is_cancelled: Optional[callable] = None
    # Decoupled models only: where the model's responses go (backend/decoupled.ResponseStream).
    responses: Optional[object] = None

    def batch_size(self, max_batch_size: int) -> int:
        if max_batch_size <= 0 or not self.inputs:
            return 1
        return int(next(iter(self.inputs.values())).shape[0])

    def requested_names(self, all_names):
        return list(all_names) if self.outputs is None else [o.name for o in self.outputs]


@dataclass
class Timing:
    """Nanoseconds spent in each phase, for statistics (ensembles sum their steps)."""
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0

    def add(self, other: "Timing"):
        self.queue_ns += other.queue_ns
        self.compute_input_ns += other.compute_input_ns
        self.compute_infer_ns += other.compute_infer_ns
        self.compute_output_ns += other.compute_output_ns


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    id: str = ""
    outputs: dict = field(default_factory=dict)          # name -> np.ndarray, in output order
    parameters: dict = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)


@dataclass
class InferResult:
    """What the core answers an external request with (codecs encode it)."""
    model_name: str
    model_version: str
    id: str = ""
    parameters: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)  # [OutputTensor], in request (or config) order

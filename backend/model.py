"""What every loaded model version is to the core: its spec (from the config), its statistics,
and `infer`. Backends subclass `Model` (or provide instances for `InstanceModel`, see scheduler)."""

import logging

from proto import model_config_pb2 as mc

from . import dtypes
from .stats import ModelStats
from .types import InferRequest, InferResponse

log = logging.getLogger("backend.model")


class TensorSpec:
    __slots__ = ("name", "datatype", "dims", "reshape", "optional")

    def __init__(self, io):
        self.name = io.name
        self.datatype = dtypes.wire_from_config(io.data_type)
        self.dims = list(io.dims)
        self.reshape = list(io.reshape.shape) if io.HasField("reshape") else None
        self.optional = bool(getattr(io, "optional", False))


class Model:
    """One version of one model, loaded. Subclasses implement `infer` and may override `close`."""

    def __init__(self, config: mc.ModelConfig, version: int, model_dir: str):
        self.config = config
        self.name = config.name
        self.version = version
        self.version_str = str(version)
        self.model_dir = model_dir
        self.max_batch_size = config.max_batch_size
        self.inputs = {i.name: TensorSpec(i) for i in config.input}
        self.outputs = {o.name: TensorSpec(o) for o in config.output}
        self.stats = ModelStats()
        self.platform = config.platform or config.backend
        # Decoupled: any number of responses per request, streamed (backend/decoupled.py).
        self.decoupled = config.model_transaction_policy.decoupled

    def refresh_specs(self):
        """Re-read the tensor specs after a backend completed the config (auto-complete)."""
        self.max_batch_size = self.config.max_batch_size
        self.inputs = {i.name: TensorSpec(i) for i in self.config.input}
        self.outputs = {o.name: TensorSpec(o) for o in self.config.output}
        self.decoupled = self.config.model_transaction_policy.decoupled

    async def infer(self, request: InferRequest) -> InferResponse:
        """The request's response; for a decoupled model, an empty response once the model's
        execute returned (its responses go to `request.responses`)."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        return True

    def pending_requests(self) -> int:
        """Requests waiting for an execution (the metrics' pending count); schedulers override."""
        return 0

    async def close(self):
        """Release resources; requests already in flight have completed when this is called."""

    def describe(self) -> str:
        return f"'{self.name}' version {self.version}"

"""Request checks against a model's configuration, with Triton's messages (core infer_request.cc
Normalize). Shared by the gRPC path, ensemble steps and BLS calls."""

from .errors import InvalidArgument
from .model import Model


def _dims(d) -> str:
    return "[" + ",".join(str(x) for x in d) + "]"


def check_inputs(model: Model, inputs: list) -> int:
    """`inputs`: (name, datatype, shape) per input in request order. Returns the batch size
    (1 for models without a batch dimension)."""
    name = model.name
    seen = set()
    for inp_name, datatype, shape in inputs:
        if inp_name in seen:
            raise InvalidArgument(f"input '{inp_name}' was specified more than once for model '{name}'")
        seen.add(inp_name)
        if inp_name not in model.inputs:
            raise InvalidArgument(f"unexpected inference input '{inp_name}' for model '{name}'")
    required = [n for n, s in model.inputs.items() if not s.optional]
    missing = [n for n in required if n not in seen]
    if missing:
        got = ", ".join(f"'{n}'" for n, _, _ in inputs)
        miss = ", ".join(f"'{n}'" for n in missing)
        n_opt = len(model.inputs) - len(required)
        expect = (f"expected {len(required)} inputs" if not n_opt else
                  f"expected number of inputs between {len(required)} and {len(model.inputs)}")
        raise InvalidArgument(
            f"{expect} but got {len(inputs)} inputs for model '{name}'. Got input(s) [{got}], "
            f"but missing required input(s) [{miss}]. Please provide all required input(s).")
    batch = None
    for inp_name, datatype, shape in inputs:
        spec = model.inputs[inp_name]
        if datatype != spec.datatype:
            raise InvalidArgument(
                f"inference input '{inp_name}' data-type is '{datatype}', but model '{name}' expects "
                f"'{spec.datatype}'")
        shape = list(shape)
        if any(d < 0 for d in shape):
            raise InvalidArgument(
                f"unexpected shape for input '{inp_name}' for model '{name}'. Dimensions must be "
                f"non-negative, got {_dims(shape)}")
        dims = shape
        if model.max_batch_size > 0:
            if not shape:
                raise InvalidArgument(
                    f"input '{inp_name}' has no shape but model requires batch dimension for '{name}'")
            if batch is None:
                batch = shape[0]
            elif shape[0] != batch:
                raise InvalidArgument(f"input '{inp_name}' batch size does not match other inputs for '{name}'")
            dims = shape[1:]
        if not _match(dims, spec.dims):
            expected = ([-1] if model.max_batch_size > 0 else []) + spec.dims
            note = (" NOTE: Setting a non-zero max_batch_size in the model config requires a batch "
                    "dimension to be prepended to each input shape. If you want to specify the full "
                    "shape including the batch dim in your input dims config, try setting "
                    "max_batch_size to zero. See the model configuration docs for more info on "
                    "max_batch_size.") if model.max_batch_size > 0 else ""
            raise InvalidArgument(
                f"unexpected shape for input '{inp_name}' for model '{name}'. Expected "
                f"{_dims(expected)}, got {_dims(shape)}.{note}")
    if model.max_batch_size > 0:
        batch = batch or 0
        if batch < 1:
            raise InvalidArgument(f"inference request batch-size must be >= 1 for '{name}'")
        if batch > model.max_batch_size:
            raise InvalidArgument(
                f"inference request batch-size must be <= {model.max_batch_size} for '{name}'")
        return batch
    return 1


def _match(shape, dims) -> bool:
    if len(shape) != len(dims):
        return False
    return all(d == -1 or d == s for s, d in zip(shape, dims))


def check_outputs(model: Model, names) -> None:
    seen = set()
    for out in names:
        if out not in model.outputs:
            raise InvalidArgument(f"unexpected inference output '{out}' for model '{model.name}'")
        if out in seen:
            raise InvalidArgument(f"output '{out}' was requested more than once for model '{model.name}'")
        seen.add(out)

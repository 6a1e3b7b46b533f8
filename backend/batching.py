"""Between the requests of one execution and what a runtime is fed, for every backend that runs
tensors (ONNX Runtime, ais_bench): with a batch dimension (max_batch_size > 0) the requests'
inputs are concatenated along it and the outputs split back by each request's rows; without one,
each request is its own feed. A runtime with a fixed batch (an OM compiled for batch 1) gets
its feeds in slices of that batch and its outputs concatenated."""

import numpy as np

from .types import InferResponse


def feeds(requests: list, batched: bool) -> list:
    """The feeds (name -> array) of one execution: one concatenated feed when `batched` and
    several requests, else one per request."""
    if batched and len(requests) > 1:
        return [{name: np.concatenate([r.inputs[name] for r in requests]) for name in requests[0].inputs}]
    return [dict(r.inputs) for r in requests]


def responses(requests: list, batched: bool, model_name: str, results: list) -> list:
    """InferResponses for `requests` from the outputs (name -> array) of the feeds that
    `feeds(requests, batched)` made, in that order."""
    if batched and len(requests) > 1:
        (merged,), out, offset = results, [], 0
        for r in requests:
            n = next(iter(r.inputs.values())).shape[0]
            out.append(InferResponse(model_name, "", r.id,
                                     {name: arr[offset:offset + n] for name, arr in merged.items()}))
            offset += n
        return out
    return [InferResponse(model_name, "", r.id, outs) for r, outs in zip(requests, results)]


def slices(feed: dict, size: int) -> list:
    """A feed cut into feeds of `size` items along the first axis (C-contiguous, as device
    runtimes take them); the caller checked that the count divides."""
    n = next(iter(feed.values())).shape[0]
    return [{name: np.ascontiguousarray(arr[i:i + size]) for name, arr in feed.items()}
            for i in range(0, n, size)]


def concatenate(parts: list) -> dict:
    """The outputs (name -> array) of consecutive slices, joined along the first axis."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

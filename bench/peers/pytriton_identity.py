"""The peer of `bench.transport`: PyTriton (NVIDIA's tritonserver core, its Python backend and
PyTriton's proxy to this process) serving an identity model with the same contract as the bench's
own: INPUT0 -> OUTPUT0, FP32, dims given by --shape, max_batch_size --max-batch-size with the
dynamic batcher (no queue delay), one instance (one infer_func).

Runs in PyTriton's own venv (../shared/tools/peers_env.sh), started by `bench.transport`:

    <pytriton-venv>/bin/python bench/peers/pytriton_identity.py --http-port P --grpc-port Q --metrics-port R

The statistics API stays unrestricted (PyTriton 0.7 restricts it with a random token by default;
perf_analyzer reads it). SIGTERM or SIGINT stops tritonserver and exits 0.
"""

import argparse
import signal

import numpy as np
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig


def identity(requests):
    # Without @batch: one dict per request, the input array returned as it came.
    return [{"OUTPUT0": request["INPUT0"]} for request in requests]


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--model", default="identity")
    p.add_argument("--shape", default="3,512,512", help="dims without the batch dimension")
    p.add_argument("--max-batch-size", type=int, default=8)
    args = p.parse_args(argv)
    shape = tuple(int(d) for d in args.shape.split(","))

    signal.signal(signal.SIGTERM, _stop)
    config = TritonConfig(http_address="127.0.0.1", grpc_address="127.0.0.1", metrics_address="127.0.0.1",
                          http_port=args.http_port,
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port)
    security = TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(model_name=args.model, infer_func=identity,
                    inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=shape)],
                    outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=shape)],
                    config=ModelConfig(batching=True, max_batch_size=args.max_batch_size,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=0)))
        print(f"pytriton_identity: serving {args.model} on grpc 127.0.0.1:{args.grpc_port}, "
              f"http 127.0.0.1:{args.http_port}", flush=True)
        try:
            triton.serve()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

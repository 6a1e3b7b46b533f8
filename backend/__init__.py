"""A Triton-compatible inference server in Python (KServe v2 / Triton gRPC protocol)."""

__version__ = "0.1.0"

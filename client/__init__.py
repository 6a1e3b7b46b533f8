"""Clients of the pose server: COCO evaluation, a perf_analyzer-style benchmark, pose pictures.

They talk to the server only over Triton's gRPC protocol (tritonclient), so they work the same
against this project's server and against NVIDIA Triton.
"""

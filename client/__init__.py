"""Clients of the pose server: COCO evaluation, a perf_analyzer-style benchmark, pose pictures.

They talk to the server only over Triton's gRPC protocol (tritonclient), so they work the same
against this project's server and against NVIDIA Triton.
"""

import os

# gRPC's C core logs a failed TLS handshake as INFO lines on stderr; the clients report the
# failure themselves, in one line (client.connection.why_unreachable).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

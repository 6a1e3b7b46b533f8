"""One exception hierarchy for everything a request can fail with: each class knows its gRPC code,
its HTTP status (Triton's HttpCodeFromError) and its Triton error name, here only."""

import grpc


class ServerError(Exception):
    """Base class: the message is what the client sees; `grpc_code` / `http_status` are how it is
    sent. `reason` is the metrics' failure reason (nv_inference_request_failure{reason}) when the
    raiser knows it better than the core (a full queue: REJECTED)."""

    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500
    # Triton's TRITONSERVER_Error_Code / pb_utils.TritonError name for the same failure.
    triton_name = "INTERNAL"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason

    def prefixed(self, prefix: str) -> "ServerError":
        """Same class and code with `prefix` in front (ensembles name their failing step)."""
        return type(self)(prefix + self.message, self.reason)


class InvalidArgument(ServerError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    triton_name = "INVALID_ARG"


class UnknownModel(InvalidArgument):
    """A model name the repository never had: INVALID_ARG on gRPC, yet 404 over HTTP (as
    tritonserver 2.51 answers)."""
    http_status = 404


class NotFound(ServerError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    triton_name = "NOT_FOUND"


class Unavailable(ServerError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    triton_name = "UNAVAILABLE"


class Internal(ServerError):
    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500
    triton_name = "INTERNAL"


class Unsupported(ServerError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501
    triton_name = "UNSUPPORTED"


class AlreadyExists(ServerError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 400
    triton_name = "ALREADY_EXISTS"


class Forbidden(ServerError):
    """A restricted API called without its header (--grpc/--http-restricted-api)."""
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 403
    triton_name = "UNAVAILABLE"


class Cancelled(ServerError):
    grpc_code = grpc.StatusCode.CANCELLED
    http_status = 400
    triton_name = "CANCELLED"


class Unknown(ServerError):
    grpc_code = grpc.StatusCode.UNKNOWN
    http_status = 400
    triton_name = "UNKNOWN"


BY_TRITON_NAME = {cls.triton_name: cls for cls in
                  (InvalidArgument, NotFound, Unavailable, Internal, Unsupported,
                   AlreadyExists, Cancelled, Unknown)}

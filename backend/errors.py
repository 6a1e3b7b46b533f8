"""One exception hierarchy for everything a request can fail with, mapped to gRPC codes here only."""

import grpc


class ServerError(Exception):
    """Base class: the message is what the client sees; `grpc_code` is how it is sent."""

    grpc_code = grpc.StatusCode.INTERNAL
    # Triton's TRITONSERVER_Error_Code / pb_utils.TritonError name for the same failure.
    triton_name = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def prefixed(self, prefix: str) -> "ServerError":
        """Same class and code with `prefix` in front (ensembles name their failing step)."""
        return type(self)(prefix + self.message)


class InvalidArgument(ServerError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    triton_name = "INVALID_ARG"


class NotFound(ServerError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    triton_name = "NOT_FOUND"


class Unavailable(ServerError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    triton_name = "UNAVAILABLE"


class Internal(ServerError):
    grpc_code = grpc.StatusCode.INTERNAL
    triton_name = "INTERNAL"


class Unsupported(ServerError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    triton_name = "UNSUPPORTED"


class AlreadyExists(ServerError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    triton_name = "ALREADY_EXISTS"


class Cancelled(ServerError):
    grpc_code = grpc.StatusCode.CANCELLED
    triton_name = "CANCELLED"


class Unknown(ServerError):
    grpc_code = grpc.StatusCode.UNKNOWN
    triton_name = "UNKNOWN"


BY_TRITON_NAME = {cls.triton_name: cls for cls in
                  (InvalidArgument, NotFound, Unavailable, Internal, Unsupported,
                   AlreadyExists, Cancelled, Unknown)}

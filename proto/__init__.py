"""Triton / KServe v2 gRPC protocol: .proto sources and their generated Python modules.

`grpc_service.proto` and `model_config.proto` are wire-identical to the descriptors in
tritonclient, so `proto.grpc_service_pb2` and `tritonclient.grpc.service_pb2` can be
imported in one process. Regenerate the modules with `python proto/generate.py`.
"""

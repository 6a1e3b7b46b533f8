"""Render .proto source text from compiled FileDescriptorProtos (dev tool).

This is how `grpc_service.proto` and `model_config.proto` in this folder were
first produced: from the reference descriptors that the `tritonclient[grpc]`
wheel ships (`tritonclient.grpc.service_pb2` / `model_config_pb2`, Triton's
protos, BSD-3-Clause, NVIDIA). Since then the .proto files are the sources;
this script is kept so the derivation can be repeated and reviewed.

The output is laid out so that protoc compiles it back to a byte-identical
FileDescriptorProto (same declaration order of fields, nested types, map
entries and oneofs; rpc bodies written as `{}` because protoc then records an
empty options message, as the reference has). Byte identity is what lets our
generated modules and tritonclient's share protobuf's default descriptor pool.

Usage (from the repo root):
    python proto/render_from_descriptors.py --out-dir proto
"""

from __future__ import annotations

import argparse
from pathlib import Path

from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FieldDescriptorProto

SCALAR_NAMES = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}

HEADERS = {
    "grpc_service.proto": (
        "// KServe v2 / Triton gRPC inference protocol: service GRPCInferenceService.\n"
        "// Derived from NVIDIA Triton's grpc_service.proto (BSD-3-Clause, Copyright NVIDIA\n"
        "// CORPORATION & AFFILIATES); wire-identical to the descriptor in tritonclient 2.73.0.\n"
        "// File name, package and import must stay as they are: the compiled descriptor has\n"
        "// to equal tritonclient's byte for byte so both can live in one process.\n"
    ),
    "model_config.proto": (
        "// Triton model configuration (config.pbtxt schema), package inference.\n"
        "// Derived from NVIDIA Triton's model_config.proto (BSD-3-Clause, Copyright NVIDIA\n"
        "// CORPORATION & AFFILIATES); wire-identical to the descriptor in tritonclient 2.73.0.\n"
        "// File name and package must stay as they are: the compiled descriptor has to\n"
        "// equal tritonclient's byte for byte so both can live in one process.\n"
    ),
}

# One-line comments for the service and its rpcs (they become docstrings in the
# generated _grpc module); the reference descriptors carry no comments.
SERVICE_DOCS = {
    "GRPCInferenceService": "KServe v2 inference protocol with Triton's extensions.",
}
RPC_DOCS = {
    "ServerLive": "Whether the server is up and able to answer requests.",
    "ServerReady": "Whether the server (and, with strict readiness, every model) is ready.",
    "ModelReady": "Whether a model version is ready for inference; unknown model is an error.",
    "ServerMetadata": "Server name, version and supported extensions.",
    "ModelMetadata": "A model's versions, platform and input/output tensor metadata.",
    "ModelInfer": "One inference request, one response.",
    "ModelStreamInfer": "Bidirectional stream of inference requests and responses (or errors).",
    "ModelConfig": "A model's configuration.",
    "ModelStatistics": "Cumulative inference statistics per model version (empty name: all).",
    "RepositoryIndex": "Models in the repository with their state.",
    "RepositoryModelLoad": "Load or reload a model, optionally with an override config/files.",
    "RepositoryModelUnload": "Unload a model (optionally its dependents).",
    "SystemSharedMemoryStatus": "Registered system shared memory regions.",
    "SystemSharedMemoryRegister": "Register a system (POSIX) shared memory region.",
    "SystemSharedMemoryUnregister": "Unregister a system shared memory region (empty name: all).",
    "CudaSharedMemoryStatus": "Registered CUDA shared memory regions.",
    "CudaSharedMemoryRegister": "Register a CUDA shared memory region from an IPC handle.",
    "CudaSharedMemoryUnregister": "Unregister a CUDA shared memory region (empty name: all).",
    "TraceSetting": "Get or update trace settings (globally or per model).",
    "LogSettings": "Get or update log settings.",
}


class SymbolTable:
    """Full names (without leading dot) of all messages and enums, for name shortening."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]):
        self.names: set[str] = set()
        for f in files:
            prefix = f.package
            parts = prefix.split(".") if prefix else []
            for i in range(1, len(parts) + 1):
                self.names.add(".".join(parts[:i]))
            for m in f.message_type:
                self._add_message(m, prefix)
            for e in f.enum_type:
                self.names.add(_join(prefix, e.name))

    def _add_message(self, m: descriptor_pb2.DescriptorProto, scope: str) -> None:
        full = _join(scope, m.name)
        self.names.add(full)
        for n in m.nested_type:
            self._add_message(n, full)
        for e in m.enum_type:
            self.names.add(_join(full, e.name))

    def resolve(self, name: str, scope: str) -> str | None:
        """Resolve a relative name the way protoc does: first component innermost-out."""
        first, _, rest = name.partition(".")
        s = scope
        while True:
            candidate = _join(s, first)
            if candidate in self.names:
                full = _join(candidate, rest) if rest else candidate
                return full if full in self.names else None
            if not s:
                return None
            s = s.rpartition(".")[0]

    def shortest(self, type_name: str, scope: str) -> str:
        """Shortest suffix of `type_name` that resolves back to it from `scope`."""
        full = type_name.lstrip(".")
        parts = full.split(".")
        for i in range(len(parts) - 1, -1, -1):
            candidate = ".".join(parts[i:])
            if self.resolve(candidate, scope) == full:
                return candidate
        return "." + full


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


class Renderer:
    def __init__(self, symbols: SymbolTable):
        self.symbols = symbols
        self.lines: list[str] = []

    def emit(self, depth: int, text: str = "") -> None:
        self.lines.append(("  " * depth + text) if text else "")

    def type_of(self, field: descriptor_pb2.FieldDescriptorProto, scope: str) -> str:
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            return self.symbols.shortest(field.type_name, scope)
        return SCALAR_NAMES[field.type]

    def render_file(self, f: descriptor_pb2.FileDescriptorProto) -> str:
        _check_supported_file(f)
        self.lines = []
        for line in HEADERS.get(f.name, "").splitlines():
            self.emit(0, line)
        self.emit(0)
        self.emit(0, f'syntax = "{f.syntax or "proto2"}";')
        self.emit(0)
        self.emit(0, f"package {f.package};")
        if f.dependency:
            self.emit(0)
            for dep in f.dependency:
                self.emit(0, f'import "{dep}";')
        for e in f.enum_type:
            self.emit(0)
            self.render_enum(e, 0)
        for m in f.message_type:
            self.emit(0)
            self.render_message(m, f.package, 0)
        for s in f.service:
            self.emit(0)
            self.render_service(s, f.package)
        return "\n".join(self.lines) + "\n"

    def render_enum(self, e: descriptor_pb2.EnumDescriptorProto, depth: int) -> None:
        if e.HasField("options") or e.reserved_range or e.reserved_name:
            raise NotImplementedError(f"enum options/reserved in {e.name}")
        self.emit(depth, f"enum {e.name} {{")
        for v in e.value:
            if v.HasField("options"):
                raise NotImplementedError(f"enum value options in {v.name}")
            self.emit(depth + 1, f"{v.name} = {v.number};")
        self.emit(depth, "}")

    def render_message(self, m: descriptor_pb2.DescriptorProto, scope: str, depth: int) -> None:
        _check_supported_message(m)
        full = _join(scope, m.name)
        entries = {n.name: n for n in m.nested_type if n.options.map_entry}
        self.emit(depth, f"message {m.name} {{")
        last_was_block = None  # None: nothing emitted yet in this message

        def gap(block: bool) -> None:
            # Blank lines around nested blocks only; plain fields stay together.
            nonlocal last_was_block
            if last_was_block is not None and (block or last_was_block):
                self.emit(depth + 1)
            last_was_block = block

        for e in m.enum_type:
            gap(True)
            self.render_enum(e, depth + 1)

        # protoc records nested types (map entries included) and fields each in
        # declaration order, so interleave them: a map field must sit between
        # the nested messages that precede and follow its entry type.
        nested = list(m.nested_type)
        fields = list(m.field)
        ni = fi = 0
        while ni < len(nested) or fi < len(fields):
            if ni < len(nested) and not nested[ni].options.map_entry:
                gap(True)
                self.render_message(nested[ni], full, depth + 1)
                ni += 1
                continue
            if fi >= len(fields):
                raise ValueError(f"map entry {nested[ni].name} without a field in {full}")
            field = fields[fi]
            entry = self._map_entry_of(field, full, entries)
            if entry is not None:
                if ni >= len(nested) or nested[ni] is not entry:
                    raise ValueError(f"map field {field.name} out of entry order in {full}")
                ni += 1
            if field.HasField("oneof_index"):
                fi = self.render_oneof(m, fields, fi, full, entries, depth + 1, gap)
            else:
                gap(False)
                self.render_field(field, full, entries, depth + 1)
                fi += 1
        self.emit(depth, "}")

    def _map_entry_of(self, field, scope: str, entries) -> descriptor_pb2.DescriptorProto | None:
        if field.label != FDP.LABEL_REPEATED or field.type != FDP.TYPE_MESSAGE:
            return None
        prefix = "." + scope + "."
        if not field.type_name.startswith(prefix):
            return None
        return entries.get(field.type_name[len(prefix):])

    def render_oneof(self, m, fields, fi, scope, entries, depth, gap) -> int:
        index = fields[fi].oneof_index
        gap(True)
        self.emit(depth, f"oneof {m.oneof_decl[index].name} {{")
        while fi < len(fields) and fields[fi].HasField("oneof_index") and fields[fi].oneof_index == index:
            if self._map_entry_of(fields[fi], scope, entries) is not None:
                raise ValueError("map fields cannot be oneof members")
            self.render_field(fields[fi], scope, entries, depth + 1, in_oneof=True)
            fi += 1
        self.emit(depth, "}")
        if any(f.HasField("oneof_index") and f.oneof_index == index for f in fields[fi:]):
            raise ValueError(f"oneof {m.oneof_decl[index].name} fields are not contiguous")
        return fi

    def render_field(self, field, scope, entries, depth, in_oneof=False) -> None:
        entry = self._map_entry_of(field, scope, entries)
        if entry is not None:
            entry_scope = _join(scope, entry.name)
            key = self.type_of(entry.field[0], entry_scope)
            value = self.type_of(entry.field[1], entry_scope)
            self.emit(depth, f"map<{key}, {value}> {field.name} = {field.number};")
            return
        label = ""
        if field.label == FDP.LABEL_REPEATED:
            label = "repeated "
        elif field.label == FDP.LABEL_REQUIRED:
            label = "required "
        elif field.proto3_optional:
            label = "optional "
        if in_oneof and label:
            raise ValueError(f"labelled field {field.name} inside a oneof")
        self.emit(depth, f"{label}{self.type_of(field, scope)} {field.name} = {field.number};")

    def render_service(self, s: descriptor_pb2.ServiceDescriptorProto, scope: str) -> None:
        if s.HasField("options"):
            raise NotImplementedError(f"service options in {s.name}")
        if s.name in SERVICE_DOCS:
            self.emit(0, f"// {SERVICE_DOCS[s.name]}")
        self.emit(0, f"service {s.name} {{")
        for i, method in enumerate(s.method):
            if method.options.ListFields():
                raise NotImplementedError(f"method options in {method.name}")
            if i and method.name in RPC_DOCS:
                self.emit(1)
            if method.name in RPC_DOCS:
                self.emit(1, f"// {RPC_DOCS[method.name]}")
            req = self.symbols.shortest(method.input_type, scope)
            resp = self.symbols.shortest(method.output_type, scope)
            req = f"stream {req}" if method.client_streaming else req
            resp = f"stream {resp}" if method.server_streaming else resp
            # `{}` (not `;`) makes protoc record an empty options message.
            body = " {}" if method.HasField("options") else ";"
            self.emit(1, f"rpc {method.name}({req}) returns ({resp}){body}")
        self.emit(0, "}")


def _check_supported_file(f: descriptor_pb2.FileDescriptorProto) -> None:
    if f.HasField("options") or f.extension or f.public_dependency or f.weak_dependency:
        raise NotImplementedError(f"{f.name}: file options/extensions are not rendered")
    if f.syntax not in ("proto3", ""):
        raise NotImplementedError(f"{f.name}: syntax {f.syntax!r}")


def _check_supported_message(m: descriptor_pb2.DescriptorProto) -> None:
    if m.reserved_range or m.reserved_name or m.extension_range or m.extension:
        raise NotImplementedError(f"{m.name}: reserved/extensions are not rendered")
    if m.HasField("options") and not (m.options.map_entry and len(m.options.ListFields()) == 1):
        raise NotImplementedError(f"{m.name}: message options are not rendered")
    for field in m.field:
        if field.HasField("options") or field.HasField("default_value") or field.HasField("json_name"):
            raise NotImplementedError(f"{m.name}.{field.name}: field options are not rendered")


def reference_files() -> list[descriptor_pb2.FileDescriptorProto]:
    """tritonclient's FileDescriptorProtos: model_config.proto, grpc_service.proto."""
    from tritonclient.grpc import model_config_pb2, service_pb2

    return [
        descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb)
        for mod in (model_config_pb2, service_pb2)
    ]


def render_all(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """Map file name -> .proto text for each FileDescriptorProto."""
    renderer = Renderer(SymbolTable(files))
    return {f.name: renderer.render_file(f) for f in files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    for name, text in render_all(reference_files()).items():
        (args.out_dir / name).write_text(text)
        print(f"wrote {args.out_dir / name}")


if __name__ == "__main__":
    main()

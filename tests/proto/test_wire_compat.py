"""Our proto/*.proto must be wire-identical to the descriptors tritonclient ships.

The .proto sources are compiled here with protoc (not read from the generated
modules) and compared with tritonclient's service_pb2 / model_config_pb2: every
service, method, message (nested types and map entries included), enum, oneof
and field. The serialized descriptors must even be byte-identical, because
that is what lets both sets of generated modules share protobuf's default pool.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from tritonclient.grpc import model_config_pb2 as ref_model_config_pb2
from tritonclient.grpc import service_pb2 as ref_service_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"
REFERENCE = {
    "grpc_service.proto": ref_service_pb2.DESCRIPTOR,
    "model_config.proto": ref_model_config_pb2.DESCRIPTOR,
}


# --------------------------------------------------------------------------- comparator


def diff_files(ours, ref) -> list[str]:
    """Differences between two FileDescriptors, one readable line each."""
    out: list[str] = []
    _eq(out, ref.name, "name", ours.name, ref.name)
    _eq(out, ref.name, "package", ours.package, ref.package)
    deps = [d.name for d in ours.dependencies], [d.name for d in ref.dependencies]
    _eq(out, ref.name, "dependencies", *deps)
    _diff_named(out, "enum", ours.enum_types_by_name, ref.enum_types_by_name, _diff_enum)
    _diff_named(out, "message", ours.message_types_by_name, ref.message_types_by_name, _diff_message)
    _diff_named(out, "service", ours.services_by_name, ref.services_by_name, _diff_service)
    return out


def _eq(out: list[str], where: str, what: str, ours, ref) -> None:
    if ours != ref:
        out.append(f"{where}: {what} {ours!r} != reference {ref!r}")


def _diff_named(out, kind, ours, ref, diff_one) -> None:
    # upb's *_by_name mappings return lists from keys(), hence the set() calls.
    mine, theirs = set(ours.keys()), set(ref.keys())
    for name in sorted(theirs - mine):
        out.append(f"missing {kind} {ref[name].full_name}")
    for name in sorted(mine - theirs):
        out.append(f"extra {kind} {ours[name].full_name}")
    for name in sorted(mine & theirs):
        diff_one(out, ours[name], ref[name])


def _diff_enum(out, ours, ref) -> None:
    values = [(v.name, v.number) for v in ours.values], [(v.name, v.number) for v in ref.values]
    _eq(out, ref.full_name, "values", *values)


def _type_name(field) -> str | None:
    target = field.message_type or field.enum_type
    return target.full_name if target else None


def _field_facts(field) -> dict:
    return {
        "number": field.number,
        "index": field.index,
        "type": field.type,
        "type_name": _type_name(field),
        "repeated": field.is_repeated,
        "required": field.is_required,
        "has_presence": field.has_presence,
        "oneof": field.containing_oneof.name if field.containing_oneof else None,
        "json_name": field.json_name,
        "options": field.GetOptions().SerializeToString(),
    }


def _diff_message(out, ours, ref) -> None:
    where = ref.full_name
    _eq(out, where, "options", ours.GetOptions().SerializeToString(), ref.GetOptions().SerializeToString())
    _eq(out, where, "oneofs", [o.name for o in ours.oneofs], [o.name for o in ref.oneofs])
    _diff_named(out, "field", ours.fields_by_name, ref.fields_by_name, _diff_field)
    _diff_named(out, "enum", ours.enum_types_by_name, ref.enum_types_by_name, _diff_enum)
    _diff_named(out, "message", ours.nested_types_by_name, ref.nested_types_by_name, _diff_message)


def _diff_field(out, ours, ref) -> None:
    mine, theirs = _field_facts(ours), _field_facts(ref)
    for key in theirs:
        _eq(out, ref.full_name, key, mine[key], theirs[key])


def _diff_service(out, ours, ref) -> None:
    _diff_named(out, "method", ours.methods_by_name, ref.methods_by_name, _diff_method)


def _diff_method(out, ours, ref) -> None:
    def facts(m):
        return {
            "index": m.index,
            "input_type": m.input_type.full_name,
            "output_type": m.output_type.full_name,
            "client_streaming": m.client_streaming,
            "server_streaming": m.server_streaming,
        }

    mine, theirs = facts(ours), facts(ref)
    for key in theirs:
        _eq(out, ref.full_name, key, mine[key], theirs[key])


# --------------------------------------------------------------------------- fixtures


def compile_descriptor_set(out_path: Path) -> descriptor_pb2.FileDescriptorSet:
    """Compile proto/*.proto with protoc into a FileDescriptorSet (imports first)."""
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
        f"--descriptor_set_out={out_path}", "--include_imports",
        str(PROTO_DIR / "grpc_service.proto"), str(PROTO_DIR / "model_config.proto"),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out_path.read_bytes())


def load_files(file_protos) -> dict:
    """FileDescriptors built in a private pool (the default pool already holds tritonclient's)."""
    pool = descriptor_pool.DescriptorPool()
    for fp in file_protos:
        pool.AddSerializedFile(fp.SerializeToString())
    return {fp.name: pool.FindFileByName(fp.name) for fp in file_protos}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> descriptor_pb2.FileDescriptorSet:
    return compile_descriptor_set(tmp_path_factory.mktemp("protoc") / "set.pb")


def _strip_json_names(fp: descriptor_pb2.FileDescriptorProto) -> None:
    # --descriptor_set_out records protoc's computed json_name on every field;
    # python_out does not, so the reference bytes carry none.
    def walk(messages):
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            walk(m.nested_type)

    walk(fp.message_type)


# --------------------------------------------------------------------------- tests


def test_compiled_files_are_the_two_reference_files(compiled):
    assert sorted(fp.name for fp in compiled.file) == sorted(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_structure_matches_tritonclient(compiled, name):
    ours = load_files(compiled.file)[name]
    assert diff_files(ours, REFERENCE[name]) == []


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_serialized_descriptor_is_byte_identical(compiled, name):
    fp = next(f for f in compiled.file if f.name == name)
    _strip_json_names(fp)
    assert fp.SerializeToString() == REFERENCE[name].serialized_pb


def test_service_has_all_twenty_rpcs_with_bidi_stream(compiled):
    service = load_files(compiled.file)["grpc_service.proto"].services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert len(service.methods) == 20
    streaming = {m.name for m in service.methods if m.client_streaming or m.server_streaming}
    assert streaming == {"ModelStreamInfer"}
    stream = service.methods_by_name["ModelStreamInfer"]
    assert stream.client_streaming and stream.server_streaming


def _message(fp, dotted: str) -> descriptor_pb2.DescriptorProto:
    head, *rest = dotted.split(".")
    msg = next(m for m in fp.message_type if m.name == head)
    for part in rest:
        msg = next(m for m in msg.nested_type if m.name == part)
    return msg


def _field(fp, dotted: str) -> descriptor_pb2.FieldDescriptorProto:
    msg_path, _, field_name = dotted.rpartition(".")
    return next(f for f in _message(fp, msg_path).field if f.name == field_name)


def _set_number(fp):
    _field(fp, "ModelInferRequest.raw_input_contents").number = 17
    return "inference.ModelInferRequest.raw_input_contents: number"


def _drop_repeated(fp):
    field = _field(fp, "ModelInferRequest.raw_input_contents")
    field.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    return "inference.ModelInferRequest.raw_input_contents: repeated"


def _map_value_type(fp):
    value = _field(fp, "ModelInferRequest.InferInputTensor.ParametersEntry.value")
    value.ClearField("type_name")
    value.type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    return "inference.ModelInferRequest.InferInputTensor.ParametersEntry.value: type"


def _json_name(fp):
    _field(fp, "ModelInferRequest.model_name").json_name = "model"
    return "inference.ModelInferRequest.model_name: json_name"


def _enum_number(fp):
    next(e for e in fp.enum_type if e.name == "DataType").value[11].number = 99
    return "inference.DataType: values"


def _not_streaming(fp):
    service = fp.service[0]
    next(m for m in service.method if m.name == "ModelStreamInfer").client_streaming = False
    return "inference.GRPCInferenceService.ModelStreamInfer: client_streaming"


@pytest.mark.parametrize(
    "file_name, mutate",
    [
        ("grpc_service.proto", _set_number),
        ("grpc_service.proto", _drop_repeated),
        ("grpc_service.proto", _map_value_type),
        ("grpc_service.proto", _json_name),
        ("model_config.proto", _enum_number),
        ("grpc_service.proto", _not_streaming),
    ],
)
def test_comparator_reports_a_mutation(compiled, file_name, mutate):
    files = [descriptor_pb2.FileDescriptorProto.FromString(fp.SerializeToString()) for fp in compiled.file]
    expected = mutate(next(f for f in files if f.name == file_name))
    diffs = diff_files(load_files(files)[file_name], REFERENCE[file_name])
    assert any(d.startswith(expected) for d in diffs), diffs


def test_generated_modules_are_in_sync_with_proto(tmp_path):
    from proto import generate

    written = generate.generate(out_dir=tmp_path)
    assert [p.name for p in written] == list(generate.GENERATED)
    for path in written:
        stale = f"{path.name} is stale; regenerate with: python proto/generate.py"
        assert path.read_bytes() == (PROTO_DIR / path.name).read_bytes(), stale


COEXIST = """
{first}
{second}
from tritonclient.grpc import service_pb2 as ref
from proto import grpc_service_pb2 as ours, grpc_service_pb2_grpc, model_config_pb2
assert ours.DESCRIPTOR.serialized_pb == ref.DESCRIPTOR.serialized_pb
request = ours.ModelInferRequest(model_name="m", raw_input_contents=[b"abc"])
request.parameters["k"].int64_param = 3
parsed = ref.ModelInferRequest.FromString(request.SerializeToString())
assert parsed.raw_input_contents == [b"abc"] and parsed.parameters["k"].int64_param == 3
assert model_config_pb2.ModelConfig(name="x").name == "x"
assert hasattr(grpc_service_pb2_grpc, "GRPCInferenceServiceServicer")
print("ok")
"""


@pytest.mark.parametrize(
    "first, second",
    [
        ("import tritonclient.grpc", "import proto.grpc_service_pb2_grpc"),
        ("import proto.grpc_service_pb2_grpc", "import tritonclient.grpc"),
    ],
    ids=["tritonclient-first", "ours-first"],
)
def test_coexists_with_tritonclient_in_one_process(first, second):
    # A fresh interpreter per order: the default descriptor pool is process-global.
    code = textwrap.dedent(COEXIST.format(first=first, second=second))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tritonclient_talks_to_a_servicer_built_on_our_modules():
    """Real RPCs over localhost: method paths and messages line up with tritonclient's client."""
    import tritonclient.grpc as tc

    from proto import grpc_service_pb2 as pb
    from proto import grpc_service_pb2_grpc as pb_grpc

    class Echo(pb_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        def ModelInfer(self, request, context):
            tensor = request.inputs[0]
            out = pb.ModelInferResponse.InferOutputTensor(
                name="OUT", datatype=tensor.datatype, shape=tensor.shape
            )
            return pb.ModelInferResponse(
                model_name=request.model_name,
                outputs=[out],
                raw_output_contents=list(request.raw_input_contents),
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = tc.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live()
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        inp = tc.InferInput("IN", list(data.shape), "FP32")
        inp.set_data_from_numpy(data)
        result = client.infer("echo", [inp])
        np.testing.assert_array_equal(result.as_numpy("OUT"), data)
        with pytest.raises(tc.InferenceServerException, match="UNIMPLEMENTED"):
            client.get_server_metadata()
        client.close()
    finally:
        server.stop(grace=None)

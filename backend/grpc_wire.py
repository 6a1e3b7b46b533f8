"""Tensor bytes across the gRPC edge without protobuf's copies.

Python protobuf copies a `bytes` field into its arena when a message is built, again when it is
serialised (twice: encoding, then the result), and once more when a parsed field is read: a
3 MiB tensor echoed through ModelInfer cost six copies in protobuf alone (profiled: ~30 % of the
event loop's time). Here the tensor fields are handled at the wire level instead, which protobuf's
encoding allows (fields may come in any order; a repeated field's entries are plain
length-delimited records):
* requests: the top-level records of field `raw_input_contents` are found by walking the message's
  records and handed on as memoryviews of the received bytes; protobuf parses the rest;
* responses: protobuf serialises the message without its tensors, and the `raw_output_contents`
  records are appended to it in one join, straight from the output arrays.
"""

from proto import grpc_service_pb2 as pb

RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
RAW_OUTPUT_CONTENTS = pb.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number
STREAM_INFER_RESPONSE = pb.ModelStreamInferResponse.DESCRIPTOR.fields_by_name["infer_response"].number
_LEN = 2  # wire type of length-delimited records


class InferMessage:
    """A parsed ModelInferRequest and its raw_input_contents (memoryviews of the request bytes)."""
    __slots__ = ("msg", "raw")

    def __init__(self, msg, raw):
        self.msg, self.raw = msg, raw


def _varint(data, pos: int):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field: int) -> bytes:
    return _encode_varint(field << 3 | _LEN)


def parse_infer_request(data: bytes) -> InferMessage:
    """ModelInferRequest bytes -> InferMessage. A malformed message raises protobuf's DecodeError
    (from parsing it whole), as the generated deserializer would."""
    view = memoryview(data)
    raw, rest = [], []
    pos = start = 0
    try:
        while pos < len(data):
            record = pos
            tag, pos = _varint(data, pos)
            field, kind = tag >> 3, tag & 7
            if kind == 0:
                _, pos = _varint(data, pos)
            elif kind == 1:
                pos += 8
            elif kind == 5:
                pos += 4
            elif kind == _LEN:
                size, pos = _varint(data, pos)
                if field == RAW_INPUT_CONTENTS:
                    if pos + size > len(data):
                        raise ValueError("truncated record")
                    rest.append(view[start:record])
                    raw.append(view[pos:pos + size])
                    start = pos + size
                pos += size
            else:
                raise ValueError("group or unknown wire type")
            if pos > len(data):
                raise ValueError("truncated record")
    except ValueError:
        return InferMessage(pb.ModelInferRequest.FromString(data), None)  # raises DecodeError
    if not raw:
        return InferMessage(pb.ModelInferRequest.FromString(data), None)
    rest.append(view[start:])
    return InferMessage(pb.ModelInferRequest.FromString(b"".join(rest)), raw)


_RAW_OUTPUT_TAG = _tag(RAW_OUTPUT_CONTENTS)
_STREAM_RESPONSE_TAG = _tag(STREAM_INFER_RESPONSE)


def infer_response_chunks(msg, tensors: list) -> list:
    """The wire records of a ModelInferResponse: `msg` (without raw_output_contents) serialised,
    then one raw_output_contents record per tensor (bytes-like), in order."""
    chunks = [msg.SerializeToString()]
    for data in tensors:
        chunks += (_RAW_OUTPUT_TAG, _encode_varint(len(data)), data)
    return chunks


def stream_response_chunks(chunks: list) -> list:
    """A ModelStreamInferResponse whose infer_response is the message of `chunks`."""
    return [_STREAM_RESPONSE_TAG, _encode_varint(sum(len(c) for c in chunks))] + chunks


def serialize(response) -> bytes:
    """The response serializer of the inference RPCs: chunks are joined (one copy of the tensors),
    messages serialised by protobuf."""
    if isinstance(response, list):
        return b"".join(response)
    return response.SerializeToString()

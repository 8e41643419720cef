"""Server-reflection probe with Python's grpc (C core), an implementation unrelated to grpc-js.

Usage: reflection-probe.py HOST:PORT SYMBOL

For each reflection version (v1, v1alpha) it asks for the file containing
SYMBOL, then fetches every dependency by file name until the set is closed,
builds a fresh DescriptorPool from those files alone (no bundled well-known
types) and resolves SYMBOL in it. It also calls grpc.health.v1.Health/Check
with raw bytes. Prints one JSON object on stdout. Needs only grpcio and
protobuf: the reflection and health messages are encoded by hand.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

# ServerReflectionRequest fields
FILE_BY_FILENAME = 3
FILE_CONTAINING_SYMBOL = 4
# ServerReflectionResponse fields
FILE_DESCRIPTOR_RESPONSE = 4
ERROR_RESPONSE = 7


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf, pos):
    shift = 0
    result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of a serialized message."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value = bytes(buf[pos:pos + length])
            pos += length
        elif wire == 1:
            value = bytes(buf[pos:pos + 8])
            pos += 8
        elif wire == 5:
            value = bytes(buf[pos:pos + 4])
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield number, wire, value


def string_field(number, text):
    data = text.encode("utf-8")
    return varint((number << 3) | 2) + varint(len(data)) + data


def identity(b):
    return b


def reflect(channel, version, request):
    method = "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version
    call = channel.stream_stream(method, request_serializer=identity, response_deserializer=identity)
    responses = list(call(iter([request]), timeout=10))
    if len(responses) != 1:
        raise RuntimeError("expected one reflection response, got %d" % len(responses))
    files = []
    for number, _, value in fields(responses[0]):
        if number == ERROR_RESPONSE:
            raise RuntimeError("reflection error: %r" % value)
        if number == FILE_DESCRIPTOR_RESPONSE:
            files.extend(v for n, _, v in fields(value) if n == 1)
    return files


def probe(channel, version, symbol):
    protos = {}

    def add(serialized):
        proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        protos.setdefault(proto.name, proto)

    for serialized in reflect(channel, version, string_field(FILE_CONTAINING_SYMBOL, symbol)):
        add(serialized)
    containing = next(
        name
        for name, proto in protos.items()
        if any(symbol == "%s.%s" % (proto.package, s.name) for s in proto.service)
        or any(symbol == "%s.%s" % (proto.package, m.name) for m in proto.message_type)
    )
    fetched_by_name = []
    while True:
        missing = sorted({d for p in protos.values() for d in p.dependency} - set(protos))
        if not missing:
            break
        for name in missing:
            fetched_by_name.append(name)
            for serialized in reflect(channel, version, string_field(FILE_BY_FILENAME, name)):
                add(serialized)
            if name not in protos:
                raise RuntimeError("reflection did not return %s" % name)

    # A fresh pool: every file, well-known types included, must come from reflection.
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add_to_pool(name):
        if name in added:
            return
        for dependency in protos[name].dependency:
            add_to_pool(dependency)
        pool.Add(protos[name])
        added.add(name)

    for name in sorted(protos):
        add_to_pool(name)

    by_filename = [
        descriptor_pb2.FileDescriptorProto.FromString(s).name
        for s in reflect(channel, version, string_field(FILE_BY_FILENAME, "google/protobuf/struct.proto"))
    ]

    result = {
        "structByFilename": "google/protobuf/struct.proto" in by_filename,
        "containingFile": containing,
        "dependencies": list(protos[containing].dependency),
        "files": sorted(protos),
        "fetchedByName": fetched_by_name,
    }
    try:
        service = pool.FindServiceByName(symbol)
    except KeyError:
        return result
    result["service"] = service.full_name
    result["methods"] = {
        m.name: {"input": m.input_type.full_name, "output": m.output_type.full_name}
        for m in service.methods
    }
    result["fieldTypes"] = {
        "%s.%s" % (m.input_type.full_name, f.name): f.message_type.full_name
        for m in service.methods
        for f in m.input_type.fields
        if f.message_type is not None
    }
    return result


def health_check(channel, service):
    call = channel.unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=identity, response_deserializer=identity
    )
    response = call(string_field(1, service) if service else b"", timeout=10)
    status = next((v for n, _, v in fields(response) if n == 1), 0)
    return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(status, status)


def main():
    target, symbol = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        print(
            json.dumps(
                {
                    "grpcVersion": grpc.__version__,
                    "v1": probe(channel, "v1", symbol),
                    "v1alpha": probe(channel, "v1alpha", symbol),
                    "health": health_check(channel, ""),
                }
            )
        )


if __name__ == "__main__":
    main()

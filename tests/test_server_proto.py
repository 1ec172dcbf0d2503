"""Our proto: the committed generated code matches the proto, and every message,
field (number, type, repetition), enum value and method we declare matches Google's
published v1 API as compiled into the official google-cloud-speech package (read in a
subprocess of its own: it registers the same names in the protobuf pool).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from server.generated import GENERATED_FILES, regenerate
from server.generated import cloud_speech_pb2 as pb

GENERATED_DIR = Path(pb.__file__).resolve().parent

_DUMP = r"""
import json
from google.protobuf import descriptor_pb2
from google.cloud.speech_v1.types import cloud_speech
proto = descriptor_pb2.FileDescriptorProto()
cloud_speech.RecognizeRequest.pb().DESCRIPTOR.file.CopyToProto(proto)
import inspect, re
from google.cloud.speech_v1.services.speech.transports import grpc as transport
paths = re.findall(r'"(/google\.cloud\.speech\.v1\.Speech/\w+)"', inspect.getsource(transport))
print(proto.SerializeToString().hex())
print(" ".join(paths))
"""


def _shape(proto: descriptor_pb2.FileDescriptorProto) -> dict:
    out = {"package": proto.package, "messages": {}, "enums": {}, "methods": {}}

    def walk(messages, prefix):
        for message in messages:
            name = prefix + message.name
            out["messages"][name] = {
                f.name: (f.number, f.type, f.label, f.type_name) for f in message.field
            }
            for enum in message.enum_type:
                out["enums"][f"{name}.{enum.name}"] = {v.name: v.number for v in enum.value}
            walk(message.nested_type, name + ".")

    walk(proto.message_type, "")
    for service in proto.service:
        for method in service.method:
            out["methods"][f"{service.name}.{method.name}"] = (
                method.input_type,
                method.output_type,
                method.client_streaming,
                method.server_streaming,
            )
    return out


def test_regenerating_gives_the_committed_files(tmp_path):
    contents = regenerate(tmp_path)
    assert sorted(contents) == sorted(GENERATED_FILES)
    for name in GENERATED_FILES:
        assert (tmp_path / name).read_bytes() == (GENERATED_DIR / name).read_bytes(), name


def test_same_names_and_numbers_as_googles_api():
    ours = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)
    dump = subprocess.run(
        [sys.executable, "-c", _DUMP], check=True, capture_output=True, text=True, timeout=120
    )
    hex_proto, paths = dump.stdout.strip().splitlines()
    theirs = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(hex_proto))
    assert ours.name == "google/cloud/speech/v1/cloud_speech.proto"  # proto-plus names its own
    ours_shape, theirs_shape = _shape(ours), _shape(theirs)
    assert ours_shape["package"] == theirs_shape["package"] == "google.cloud.speech.v1"
    for name, fields in ours_shape["messages"].items():
        assert name in theirs_shape["messages"], name
        for field, spec in fields.items():
            assert theirs_shape["messages"][name].get(field) == spec, (name, field)
    for name, values in ours_shape["enums"].items():
        assert theirs_shape["enums"][name] == values, name
    # the client's method paths (its service lives in no descriptor) and their messages
    for name, (request, response, client_streaming, server_streaming) in ours_shape[
        "methods"
    ].items():
        assert f"/google.cloud.speech.v1.{name.replace('.', '/')}" in paths.split(), name
        assert request[len(".google.cloud.speech.v1.") :] in theirs_shape["messages"]
        assert response[len(".google.cloud.speech.v1.") :] in theirs_shape["messages"]
        assert server_streaming == client_streaming == name.endswith("StreamingRecognize")
    # the subset the issue requires is all there
    assert {"Speech.Recognize", "Speech.StreamingRecognize"} <= set(ours_shape["methods"])
    required = {
        "RecognitionConfig": {
            "encoding",
            "sample_rate_hertz",
            "language_code",
            "max_alternatives",
            "enable_word_time_offsets",
            "enable_word_confidence",
            "model",
        },
        "StreamingRecognitionConfig": {"config", "single_utterance", "interim_results"},
        "StreamingRecognitionResult": {"alternatives", "is_final", "stability", "result_end_time"},
        "WordInfo": {"start_time", "end_time", "word", "confidence"},
        "StreamingRecognizeResponse": {"results", "speech_event_type"},
    }
    for name, fields in required.items():
        assert fields <= set(ours_shape["messages"][name]), name
    print(json.dumps(sorted(ours_shape["messages"])))

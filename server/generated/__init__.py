"""Python code generated from ``server/proto`` (committed; do not edit by hand).

``cloud_speech_pb2`` (messages), ``cloud_speech_pb2_grpc`` (service stubs and
servicer base) and ``cloud_speech_pb2.pyi`` come from
``server/proto/google/cloud/speech/v1/cloud_speech.proto`` through
``grpc_tools.protoc``. protoc names modules after the proto's path
(``google.cloud.speech.v1``), which would collide with Google's own package, so
:func:`regenerate` flattens the output into this folder and points the one
cross-module import at ``server.generated``. ``tests/test_server_proto.py``
checks that regenerating gives byte-identical files.

>>> from server.generated import regenerate  # doctest: +SKIP
>>> sorted(regenerate())  # doctest: +SKIP
['cloud_speech_pb2.py', 'cloud_speech_pb2.pyi', 'cloud_speech_pb2_grpc.py']
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["GENERATED_FILES", "PROTO_FILE", "PROTO_ROOT", "regenerate"]

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
PROTO_FILE = "google/cloud/speech/v1/cloud_speech.proto"
GENERATED_FILES: tuple[str, ...] = (
    "cloud_speech_pb2.py",
    "cloud_speech_pb2.pyi",
    "cloud_speech_pb2_grpc.py",
)
_PROTOC_IMPORT = "from google.cloud.speech.v1 import cloud_speech_pb2"
_OUR_IMPORT = "from server.generated import cloud_speech_pb2"


def regenerate(out_dir: str | os.PathLike | None = None) -> dict[str, bytes]:
    """Run protoc on :data:`PROTO_FILE`; write the files to ``out_dir`` (default: here).

    Returns ``{file name: contents}``. Needs ``grpcio-tools`` (a dev dependency).
    """
    import grpc_tools
    from grpc_tools import protoc

    from asr.fileio import atomic_write

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    contents: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(PROTO_ROOT / PROTO_FILE),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {PROTO_ROOT / PROTO_FILE} (exit {status})")
        generated = Path(tmp) / Path(PROTO_FILE).parent
        for name in GENERATED_FILES:
            text = (generated / name).read_text(encoding="utf-8")
            contents[name] = text.replace(_PROTOC_IMPORT, _OUR_IMPORT).encode("utf-8")
    target = Path(out_dir) if out_dir is not None else Path(__file__).resolve().parent
    for name, data in contents.items():
        with atomic_write(target / name, "wb") as handle:
            handle.write(data)
    return contents

"""Safe defaults of the server: TLS, the bearer token, the loopback rule, no paths.

A self-signed certificate for ``localhost``/127.0.0.1 is made at test time with
``cryptography``; the in-process server (the yesno bundle fixture of ``conftest.py``)
serves TLS and requires a token. Oracles: the Recognizer itself for transcripts
over TLS, gRPC status codes for refusals (a plaintext client, an untrusted
certificate, a missing/wrong token), the official google-cloud-speech client with
``grpc.access_token_call_credentials`` in a subprocess, ``ServerConfig``'s own
refusal of non-loopback binds (nothing is bound to 0.0.0.0 here), and patched
``open``/``os.open``/``os.stat`` to show that no request reaches the filesystem.
"""

from __future__ import annotations

import builtins
import datetime
import io
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from asr.cli.main import build_parser, main
from asr.errors import ServerError
from server.auth import BearerTokenInterceptor, read_token_file
from server.generated import cloud_speech_pb2 as pb
from server.generated import cloud_speech_pb2_grpc as pb_grpc
from server.main import ServerConfig, is_loopback_host, load_server_credentials, start_server
from tests.support.server_fakes import ServerThread
from tests.support.yesno_server import stream_directly, stream_file

TOKEN = "s3cret-Token_0123456789abcdef"
MAX_MESSAGE_BYTES = 256 * 1024


def make_cert(directory: Path, *, name: str = "server"):
    """A self-signed EC certificate for localhost and 127.0.0.1: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    cert, key = make_cert(directory)
    other_cert, other_key = make_cert(directory, name="other")
    token_file = directory / "token.txt"
    token_file.write_text(TOKEN + "\n")
    return {"cert": cert, "key": key, "other_cert": other_cert, "other_key": other_key,
            "token_file": token_file, "dir": directory}  # fmt: skip


@pytest.fixture(scope="module")
def secure(recognizer, certs):  # noqa: F811
    config = ServerConfig(
        port=0, tls_cert_file=certs["cert"], tls_key_file=certs["key"], auth_token=TOKEN,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )  # fmt: skip
    srv = ServerThread({"default": recognizer}, config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(secure, certs):
    credentials = grpc.ssl_channel_credentials(root_certificates=certs["cert"].read_bytes())
    with grpc.secure_channel(secure.address, credentials) as chan:
        yield chan


@pytest.fixture(scope="module")
def wav(yesno_dir):
    return sorted(Path(yesno_dir).rglob("*.wav"))[-1]


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def recognize_request(path: Path, **config) -> pb.RecognizeRequest:
    return pb.RecognizeRequest(
        config=pb.RecognitionConfig(**config), audio=pb.RecognitionAudio(content=path.read_bytes())
    )


def audio_requests(model: str = ""):
    config = pb.RecognitionConfig(
        encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16, sample_rate_hertz=8000, model=model
    )
    yield pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(config=config)
    )
    yield pb.StreamingRecognizeRequest(audio_content=b"\0\0" * 800)


# ---- TLS and the token, end to end


def test_tls_with_token_gives_the_recognizers_transcripts(channel, recognizer, wav):  # noqa: F811
    stub = pb_grpc.SpeechStub(channel)
    response = stub.Recognize(recognize_request(wav), timeout=60, metadata=AUTH)
    offline = recognizer.transcribe(wav).text
    assert offline and " ".join(r.alternatives[0].transcript for r in response.results) == offline

    class AuthStub:  # stream_file's stub, with the token added to each call
        def StreamingRecognize(self, requests, timeout):
            return stub.StreamingRecognize(requests, timeout=timeout, metadata=AUTH)

    responses, _ = stream_file(AuthStub(), wav)
    finals = [r.results[0].alternatives[0].transcript for r in responses if r.results[0].is_final]
    assert finals == stream_directly(recognizer, wav)


def test_plaintext_and_untrusted_clients_fail_against_tls(secure, certs, wav):
    with grpc.insecure_channel(secure.address) as plain, pytest.raises(grpc.RpcError) as info:
        pb_grpc.SpeechStub(plain).Recognize(recognize_request(wav), timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    untrusted = grpc.ssl_channel_credentials(root_certificates=certs["other_cert"].read_bytes())
    with (
        grpc.secure_channel(secure.address, untrusted) as chan,
        pytest.raises(grpc.RpcError) as info,
    ):
        pb_grpc.SpeechStub(chan).Recognize(recognize_request(wav), timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "metadata, message",
    [
        ((), "missing credentials"),
        ((("authorization", "Bearer wrong-token-0123456789abc"),), "invalid bearer token"),
        ((("authorization", f"Bearer {TOKEN[:-1]}"),), "invalid bearer token"),
        ((("authorization", f"Bearer {TOKEN}x"),), "invalid bearer token"),
        ((("authorization", f"Basic {TOKEN}"),), "must be 'Bearer <token>'"),
        ((("authorization", TOKEN),), "must be 'Bearer <token>'"),
        ((("authorization", "Bearer "),), "must be 'Bearer <token>'"),
        ((("x-api-key", TOKEN),), "missing credentials"),
        ((*AUTH, ("authorization", "Bearer other-token-0123456789")), "more than one"),
    ],
)
def test_missing_or_wrong_token_is_unauthenticated(channel, secure, wav, metadata, message):
    stub = pb_grpc.SpeechStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Recognize(recognize_request(wav), timeout=10, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamingRecognize(audio_requests(), timeout=10, metadata=metadata))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in info.value.details()
    assert TOKEN not in info.value.details()
    assert secure.running.servicer.num_streams == 0  # refused before the servicer


def test_token_scheme_is_case_insensitive(channel, recognizer, wav):  # noqa: F811
    stub = pb_grpc.SpeechStub(channel)
    metadata = (("authorization", f"bearer {TOKEN}"),)
    response = stub.Recognize(recognize_request(wav), timeout=60, metadata=metadata)
    assert response.results[0].alternatives[0].transcript


def test_health_and_reflection_stay_open(channel):
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in reply.list_services_response.service}
    assert "google.cloud.speech.v1.Speech" in names


def test_oversized_message_is_refused_over_tls(channel, wav):
    request = pb.RecognizeRequest(
        config=pb.RecognitionConfig(
            encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16, sample_rate_hertz=8000
        ),
        audio=pb.RecognitionAudio(content=b"\0\0" * (MAX_MESSAGE_BYTES // 2 + 10)),
    )
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.SpeechStub(channel).Recognize(request, timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_token_without_tls_on_loopback():
    from tests.support.server_fakes import FakeRecognizer

    srv = ServerThread({"default": FakeRecognizer()}, ServerConfig(port=0, auth_token=TOKEN))
    try:
        with grpc.insecure_channel(srv.address) as chan:
            stub = pb_grpc.SpeechStub(chan)
            assert list(stub.StreamingRecognize(audio_requests(), timeout=10, metadata=AUTH)) == []
            with pytest.raises(grpc.RpcError) as info:
                list(stub.StreamingRecognize(audio_requests(), timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        srv.stop()


# ---- the official client with a token over TLS (a process of its own)

CLIENT = r"""
import json, sys
import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import speech_v1 as speech
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport

address, ca_path, audio_path, token = sys.argv[1:5]
tls = grpc.ssl_channel_credentials(root_certificates=open(ca_path, "rb").read())
if token:
    tls = grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
channel = grpc.secure_channel(address, tls)
client = speech.SpeechClient(
    transport=SpeechGrpcTransport(channel=channel, credentials=AnonymousCredentials())
)
config = speech.RecognitionConfig(language_code="en-US")  # a WAV file: its header gives the rate
audio = open(audio_path, "rb").read()
try:
    response = client.recognize(config=config, audio=speech.RecognitionAudio(content=audio))
    out = {"recognize": [r.alternatives[0].transcript for r in response.results]}
except Exception as err:
    out = {"error": type(err).__name__, "message": str(err)}
print(json.dumps(out))
"""


def run_official_client(address: str, ca: Path, wav: Path, token: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, address, str(ca), str(wav), token],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_official_client_with_token_over_tls(secure, certs, recognizer, wav):  # noqa: F811
    out = run_official_client(secure.address, certs["cert"], wav, TOKEN)
    assert " ".join(out["recognize"]) == recognizer.transcribe(wav).text
    out = run_official_client(secure.address, certs["cert"], wav, "")
    assert out["error"] == "Unauthenticated", out  # google.api_core's UNAUTHENTICATED


# ---- asr stream over TLS with a token


def test_asr_stream_with_tls_and_token(secure, certs, recognizer, wav, capsys):  # noqa: F811
    tls = ["--server", secure.address, "--tls-ca", str(certs["cert"])]
    assert main(["stream", str(wav), *tls, "--auth-token-file", str(certs["token_file"])]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{wav}\t{' '.join(stream_directly(recognizer, wav))}"
    # by name, as the certificate says
    port = secure.running.port
    assert main(["stream", str(wav), "--server", f"localhost:{port}", "--tls-ca",
                 str(certs["cert"]), "--auth-token-file", str(certs["token_file"])]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["stream", str(wav), *tls]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main(["stream", str(wav), *tls[:2], "--auth-token-file", str(certs["token_file"])]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err  # plaintext against TLS
    assert main(["stream", str(wav), *tls[:2], "--tls-ca", str(certs["dir"] / "none.pem")]) == 2
    assert "cannot read the TLS CA file" in capsys.readouterr().err


# ---- no request reaches the filesystem


class FileSystemSpy:
    """Records every open/stat while installed (and lets them through)."""

    NAMES = (("builtins", builtins, "open"), ("io", io, "open"), ("os", os, "open"),
             ("os", os, "stat"), ("os", os, "lstat"), ("os", os, "listdir"),
             ("os", os, "scandir"))  # fmt: skip

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, str]] = []
        for module_name, module, name in self.NAMES:
            real = getattr(module, name)
            monkeypatch.setattr(module, name, self._wrap(f"{module_name}.{name}", real))

    def _wrap(self, label, real):
        def spy(*args, **kwargs):
            self.calls.append((label, repr(args[:1])))
            return real(*args, **kwargs)

        return spy


BAD_MODEL_NAMES = [
    "../x", "/etc/passwd", "../../../../etc/passwd", "default/../default", "./default",
    "default\0", "\0", "~/bundle", "file:///etc/passwd", "C:\\Windows\\win.ini", "default ",
    "DEFAULT", "d\u00e9fault", "x" * 1000, "x" * 5000,
    "x" * 100_000,  # echoed whole, its status details outgrew gRPC's 16 KiB header limit
]  # fmt: skip


@pytest.mark.parametrize("name", BAD_MODEL_NAMES, ids=lambda n: repr(n[:20]))
def test_model_names_select_only_loaded_models(channel, wav, name, monkeypatch):
    stub = pb_grpc.SpeechStub(channel)
    streaming, clip = list(audio_requests(model=name)), recognize_request(wav, model=name)
    spy = FileSystemSpy(monkeypatch)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamingRecognize(iter(streaming), timeout=10, metadata=AUTH))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown model" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Recognize(clip, timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert spy.calls == []


def test_model_name_with_bad_utf8_is_invalid_argument(channel, monkeypatch):
    config = pb.RecognitionConfig(encoding=1, sample_rate_hertz=8000, model="ab")
    raw = config.SerializeToString().replace(b"ab", b"\xff\xfe")  # not UTF-8: unbuildable
    request = b"\x0a" + bytes([len(raw)]) + raw + b"\x12\x02\x0a\x00"  # config, audio{content}
    recognize = channel.unary_unary("/google.cloud.speech.v1.Speech/Recognize")
    spy = FileSystemSpy(monkeypatch)
    with pytest.raises(grpc.RpcError) as info:
        recognize(request, timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert spy.calls == []


def test_thousands_of_unknown_fields_get_a_bounded_invalid_argument(channel, wav):
    """Each unknown field was listed in the status details, which then outgrew gRPC's 16 KiB
    header and reached the client as RESOURCE_EXHAUSTED 'Stream removed'."""
    request = recognize_request(wav)
    junk = b"".join(_varint((number << 3) | 0) + b"\x01" for number in range(1000, 5000))
    request.config.MergeFromString(junk)  # 4,000 unknown varint fields
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.SpeechStub(channel).Recognize(request, timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unsupported field" in info.value.details() and "3992 more" in info.value.details()
    assert len(info.value.details()) <= 1024


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_audio_uri_is_refused_without_opening_it(channel, monkeypatch):
    spy = FileSystemSpy(monkeypatch)
    request = pb.RecognizeRequest(
        config=pb.RecognitionConfig(), audio=pb.RecognitionAudio(uri="file:///etc/passwd")
    )
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.SpeechStub(channel).Recognize(request, timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "uri is not supported" in info.value.details()
    assert spy.calls == []


def test_the_spy_sees_a_real_open(monkeypatch, tmp_path):
    spy = FileSystemSpy(monkeypatch)
    (tmp_path / "a").write_text("x")
    assert any(label.endswith("open") for label, _ in spy.calls)


# ---- the loopback rule and the TLS files (ServerConfig, no bind)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "localhost", "LocalHost", "::1", "[::1]", "::ffff:127.0.0.1"]
)
def test_loopback_hosts_need_nothing(host):
    assert is_loopback_host(host)
    assert ServerConfig(host=host).host == host


REMOTE = ["0.0.0.0", "", "::", "[::]", "10.0.0.1", "192.168.1.5", "8.8.8.8", "example.com",
          "localhost.", "::ffff:10.0.0.1", "127.0.0.1 ", "fe80::1"]  # fmt: skip


@pytest.mark.parametrize("host", REMOTE)
def test_remote_hosts_need_tls_and_a_token(host, certs):
    assert not is_loopback_host(host)
    tls = {"tls_cert_file": certs["cert"], "tls_key_file": certs["key"]}
    for kwargs, missing in [({}, "without TLS and a bearer token"),
                            (tls, "without a bearer token"),
                            ({"auth_token": TOKEN}, "without TLS")]:  # fmt: skip
        with pytest.raises(ServerError, match=missing):
            ServerConfig(host=host, **kwargs)
    assert ServerConfig(host=host, auth_token=TOKEN, **tls).tls
    assert ServerConfig(host=host, insecure_allow_remote=True).insecure_allow_remote


def test_token_is_checked_and_never_shown(certs, tmp_path):
    assert TOKEN not in repr(ServerConfig(auth_token=TOKEN))
    assert TOKEN not in repr(BearerTokenInterceptor(token=TOKEN))
    for bad, message in [("short", "at least 16"), ("a" * 20 + " b", "no spaces"),
                         ("a" * 20 + "\n", "no spaces"), ("ä" * 20, "no spaces")]:  # fmt: skip
        with pytest.raises(ServerError, match=message):
            ServerConfig(auth_token=bad)
    assert read_token_file(certs["token_file"]) == TOKEN
    for content, message in [("", "empty"), ("a" * 20 + "\n" + "b" * 20, "single line"),
                             ("x" * 5000, "larger"), ("short\n", "at least 16")]:  # fmt: skip
        path = tmp_path / "token"
        path.write_text(content)
        with pytest.raises(ServerError, match=message):
            read_token_file(path)
    with pytest.raises(ServerError, match="cannot read the token file"):
        read_token_file(tmp_path / "missing")


def test_tls_file_errors_before_the_server_starts(certs, tmp_path, recognizer):  # noqa: F811
    import asyncio

    from cryptography.hazmat.primitives import serialization

    with pytest.raises(ServerError, match="both a certificate and its private key"):
        ServerConfig(tls_cert_file=certs["cert"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    key = serialization.load_pem_private_key(certs["key"].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    cases = [
        (tmp_path / "missing.pem", certs["key"], "cannot read the TLS certificate"),
        (certs["cert"], tmp_path / "missing.key", "cannot read the TLS private key"),
        (tmp_path, certs["key"], "cannot read the TLS certificate"),  # a directory
        (certs["key"], certs["key"], "not a PEM certificate"),
        (certs["cert"], certs["cert"], "not a PEM private key"),
        (certs["cert"], certs["other_key"], "does not belong to the certificate"),
        (certs["cert"], encrypted, "encrypted private keys are not supported"),
        (garbage, certs["key"], "cannot use the TLS certificate"),
    ]
    for cert, key_path, message in cases:
        config = ServerConfig(port=0, tls_cert_file=cert, tls_key_file=key_path)
        with pytest.raises(ServerError, match=message):
            load_server_credentials(config)
        with pytest.raises(ServerError, match=message):
            asyncio.run(start_server({"default": recognizer}, config))
    assert load_server_credentials(ServerConfig()) is None


# ---- asr serve: the same rules, exit code 2 before any model loads


def serve_args(*extra: str):
    return build_parser().parse_args(["serve", "--model", "/nonexistent/bundle", *extra])


def test_asr_serve_refuses_remote_without_tls_and_token(certs, capsys):
    assert main(["serve", "--model", "/nonexistent/bundle", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to bind the non-loopback address '0.0.0.0'" in err
    assert "--insecure-allow-remote" in err and "/nonexistent" not in err  # before loading
    tls = ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]
    assert main(["serve", "--model", "/nonexistent/bundle", "--host", "10.1.2.3", *tls]) == 2
    assert "without a bearer token" in capsys.readouterr().err
    assert main(["serve", "--model", "/x", "--tls-cert", str(certs["cert"])]) == 2
    assert "both a certificate and its private key" in capsys.readouterr().err
    assert main(["serve", "--model", "/nonexistent/bundle",
                 "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["other_key"])]) == 2  # fmt: skip
    assert "does not belong to the certificate" in capsys.readouterr().err


def test_asr_serve_config_from_args(certs, monkeypatch):
    from asr.cli.serve import config_from_args

    config = config_from_args(serve_args(), environ={})
    assert (config.host, config.port, config.auth_token, config.tls) == (
        "127.0.0.1", 50051, None, False
    )  # fmt: skip
    defaults = ServerConfig()
    assert config.max_streams == defaults.max_streams == 64
    assert config.max_message_bytes == defaults.max_message_bytes == 10 * 1024 * 1024
    assert config.max_stream_duration_s == defaults.max_stream_duration_s == 305.0
    args = serve_args("--host", "0.0.0.0", "--tls-cert", str(certs["cert"]), "--tls-key",
                      str(certs["key"]), "--auth-token-file", str(certs["token_file"]),
                      "--max-streams", "3", "--max-message-mb", "0.5", "--max-stream-s", "9")  # fmt: skip
    config = config_from_args(args, environ={})
    assert config.auth_token == TOKEN and config.tls and config.host == "0.0.0.0"
    assert (config.max_streams, config.max_message_bytes, config.max_stream_duration_s) == (
        3, 512 * 1024, 9.0
    )  # fmt: skip
    # the environment variable, read by the CLI only
    assert config_from_args(serve_args(), environ={"ASR_AUTH_TOKEN": TOKEN}).auth_token == TOKEN
    with pytest.raises(ServerError, match="ASR_AUTH_TOKEN: .*at least 16"):
        config_from_args(serve_args(), environ={"ASR_AUTH_TOKEN": "short"})
    config = config_from_args(serve_args("--host", "0.0.0.0", "--insecure-allow-remote"), {})
    assert config.insecure_allow_remote
    # the wall-clock limit of a stream: default None (the servicer's 2x rule), or given
    assert config_from_args(serve_args(), {}).max_stream_wall_s is None
    config = config_from_args(serve_args("--max-stream-wall-s", "12"), {})
    assert config.max_stream_wall_s == 12.0
    with pytest.raises(ServerError, match="max_stream_wall_s"):
        config_from_args(serve_args("--max-stream-wall-s", "0"), {})


def test_asr_serve_stats_line_is_off_on_a_terminal_by_default(monkeypatch):
    """`asr serve &` in a shell: no JSON stats blob every minute on the terminal; a service
    whose log is a file or pipe keeps the 60 s stats line; --stats-interval decides."""
    from asr.cli import serve as serve_cli
    from asr.cli.serve import config_from_args

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert serve_cli.stats_interval(None, Tty()) == 0.0
    assert serve_cli.stats_interval(None, io.StringIO()) == 60.0
    assert serve_cli.stats_interval(5.0, Tty()) == 5.0
    assert serve_cli.stats_interval(0.0, io.StringIO()) == 0.0
    with pytest.raises(ServerError, match="--stats-interval"):
        serve_cli.stats_interval(-1.0, io.StringIO())
    monkeypatch.setattr(sys, "stderr", Tty())
    assert config_from_args(serve_args(), {}).stats_interval_s == 0.0
    assert config_from_args(serve_args("--stats-interval", "7"), {}).stats_interval_s == 7.0
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert config_from_args(serve_args(), {}).stats_interval_s == 60.0


def test_asr_serve_help_shows_security_and_limit_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ["default 127.0.0.1", "--tls-cert", "--tls-key", "--auth-token-file",
                   "--insecure-allow-remote", "RESOURCE_EXHAUSTED (default 64)",
                   "RESOURCE_EXHAUSTED (default 10)", "OUT_OF_RANGE (default 305)",
                   "health service and server reflection stay open"]:  # fmt: skip
        assert needle in text, needle

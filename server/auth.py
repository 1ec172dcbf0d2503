"""Bearer-token check for the gRPC server: :class:`BearerTokenInterceptor`.

With a token configured, every RPC except the open services (the standard
health service and server reflection, so that load balancers and ``grpcurl
list`` work) must carry the metadata ``authorization: Bearer <token>``; a
missing, malformed or wrong token gets ``UNAUTHENTICATED`` before the request
is even parsed. Tokens are compared with :func:`hmac.compare_digest`. Send the
token over TLS only (a bearer token on a plaintext channel is readable by
anyone on the path): ``grpc.access_token_call_credentials(token)`` on a secure
channel sends exactly this header.

>>> interceptor = BearerTokenInterceptor(token=read_token_file("token.txt"))  # doctest: +SKIP
>>> server = grpc.aio.server(interceptors=[interceptor])  # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Sequence

import grpc

from asr.errors import ServerError

__all__ = [
    "MIN_TOKEN_CHARS",
    "OPEN_METHOD_PREFIXES",
    "BearerTokenInterceptor",
    "check_token",
    "read_token_file",
]

logger = logging.getLogger("asr.server")

MIN_TOKEN_CHARS = 16
# RFC 6750 b64token: what may follow "Bearer " in an authorization header.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_TOKEN_FILE_BYTES = 4096
# Services that stay open when a token is configured (health checks, discovery).
OPEN_METHOD_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def check_token(token: str) -> None:
    """Raise :class:`ServerError` unless ``token`` is a usable bearer token (never echoed)."""
    if not isinstance(token, str):
        raise ServerError(f"the bearer token must be a string, got {type(token).__name__}")
    if len(token) < MIN_TOKEN_CHARS:
        raise ServerError(
            f"the bearer token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not _TOKEN_RE.fullmatch(token):
        raise ServerError(
            "the bearer token may only contain letters, digits and -._~+/ "
            "(optionally ending in '='): no spaces or control characters"
        )


def read_token_file(path: str | os.PathLike) -> str:
    """The bearer token in ``path`` (its only line; surrounding whitespace is dropped)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_TOKEN_FILE_BYTES + 1)
    except OSError as err:
        raise ServerError(f"cannot read the token file {path}: {err.strerror or err}") from None
    if len(data) > _MAX_TOKEN_FILE_BYTES:
        raise ServerError(f"{path}: a token file holds one short line, this one is larger")
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ServerError(f"{path}: the token must be ASCII") from None
    if not token:
        raise ServerError(f"{path}: the token file is empty")
    if "\n" in token:
        raise ServerError(f"{path}: the token file must hold a single line")
    try:
        check_token(token)
    except ServerError as err:
        raise ServerError(f"{path}: {err}") from None
    return token


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` on every RPC outside ``open_prefixes``.

    ``num_rejected`` counts the calls refused with ``UNAUTHENTICATED``.
    """

    def __init__(self, *, token: str, open_prefixes: Sequence[str] = OPEN_METHOD_PREFIXES) -> None:
        check_token(token)
        self._token = token.encode("ascii")
        self._open_prefixes = tuple(open_prefixes)
        self.num_rejected = 0

    def __repr__(self) -> str:  # never show the token
        return f"BearerTokenInterceptor(open_prefixes={self._open_prefixes!r})"

    def _failure(self, metadata) -> str | None:
        """Why the call's metadata does not authenticate it (None: it does)."""
        values = [value for key, value in (metadata or ()) if key == "authorization"]
        if not values:
            return (
                "missing credentials: this server requires the metadata "
                "'authorization: Bearer <token>'"
            )
        if len(values) > 1:
            return "more than one authorization header"
        value = values[0]
        if isinstance(value, str):
            value = value.encode("utf-8", "replace")
        scheme, _, given = value.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return "the authorization header must be 'Bearer <token>'"
        if not hmac.compare_digest(given.strip(), self._token):
            return "invalid bearer token"
        return None

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method or ""
        if method.startswith(self._open_prefixes):
            return await continuation(handler_call_details)
        reason = self._failure(handler_call_details.invocation_metadata)
        if reason is None:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: UNIMPLEMENTED, as without a token
        self.num_rejected += 1
        logger.debug("rejected %s: %s", method, reason)
        return _refusal(handler, reason)


def _refusal(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that aborts with UNAUTHENTICATED, reading nothing.

    No request deserializer: an unauthenticated caller's bytes are never parsed.
    """

    async def abort(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)

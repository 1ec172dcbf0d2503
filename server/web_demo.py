"""The live browser demo: a static page, a WebSocket stream and a file upload (aiohttp).

``asr serve --web-port P`` serves, on the gRPC server's host (same loopback, TLS and
token rules):

- ``GET /``: ``server/web/index.html`` and its scripts (plain HTML + JS, no build step),
  which capture the microphone, stream 16-bit PCM over a WebSocket and show interim
  text live and finals with word times and confidences;
- ``GET /ws``: the WebSocket. The first message is JSON
  ``{"type": "start", "sample_rate": HZ, "token": "...", "model": "..."}``; then binary
  messages of 16-bit little-endian mono PCM at that rate; then ``{"type": "stop"}``.
  The server answers JSON ``{"type": "interim"|"final", "text", "words": [{word, start,
  end, confidence}], "end_time"}``, ``{"type": "done"}`` and, on bad input or a limit,
  ``{"type": "error", "message"}`` before it closes the socket. The audio goes to the
  SAME :class:`~server.scheduler.BatchScheduler` as the gRPC streams;
- ``POST /transcribe``: an audio file as the body (``Authorization: Bearer`` with a
  token); answers :meth:`asr.recognizer.Result.to_dict` as JSON.

Limits are the gRPC ones: ``max_streams`` concurrent WebSocket streams, ``max_message_bytes``
per message or upload, ``max_stream_duration_s`` of audio, ``stream_wall_limit_s`` open.
A browser ``Origin`` other than the page's own host is refused (cross-site WebSockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from aiohttp import WSMsgType, web

from asr.errors import AsrError, ServerError
from server.scheduler import BatchScheduler, StreamEvent, StreamSlot, release_stream
from server.servicer import ServicerLimits

__all__ = ["WEB_DIR", "WebDemo", "start_web_demo"]

logger = logging.getLogger("asr.server")

#: The page's static files (package data).
WEB_DIR = Path(__file__).resolve().parent / "web"


class _Refused(Exception):
    pass


def _event_json(event: StreamEvent) -> dict[str, Any] | None:
    if event.kind not in ("interim", "final"):
        return None
    result = event.result
    return {
        "type": event.kind,
        "text": result.text,
        "end_time": round(float(event.end_time_s), 3),
        "words": [
            {
                "word": w.word,
                "start": round(float(w.start), 3),
                "end": round(float(w.end), 3),
                "confidence": round(float(w.confidence), 4),
            }
            for w in result.words
        ],
    }


class WebDemo:
    """The aiohttp application of the demo over one scheduler and its recognizers."""

    def __init__(
        self,
        recognizers: Mapping[str, Any],
        scheduler: BatchScheduler,
        limits: ServicerLimits,
        *,
        max_message_bytes: int,
        auth_token: str | None = None,
    ) -> None:
        self.recognizers = dict(recognizers)
        self.default_model = next(iter(self.recognizers))
        self.scheduler = scheduler
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self.auth_token = auth_token
        self.accepting = True
        self.num_streams = 0
        self.app = web.Application(client_max_size=max_message_bytes)
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/ws", self._websocket)
        self.app.router.add_post("/transcribe", self._transcribe)
        self.app.router.add_static("/static/", WEB_DIR, show_index=False, follow_symlinks=False)

    # ---- helpers

    def _token_ok(self, token: Any) -> bool:
        if self.auth_token is None:
            return True
        return isinstance(token, str) and hmac.compare_digest(
            token.encode("utf-8", "replace"), self.auth_token.encode()
        )

    def _recognizer(self, name: Any):
        if name in (None, ""):
            return self.recognizers[self.default_model]
        if not isinstance(name, str) or name not in self.recognizers:
            raise _Refused(
                f"unknown model {str(name)[:64]!r}; this server has: {', '.join(self.recognizers)}"
            )
        return self.recognizers[name]

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser (or a same-origin GET): the token rules apply
        return urlsplit(origin).netloc.lower() == request.host.lower()

    # ---- handlers

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _transcribe(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            return web.json_response({"error": "cross-origin request refused"}, status=403)
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        if not self._token_ok(token):
            return web.json_response({"error": "a valid bearer token is required"}, status=401)
        if not self.accepting:
            return web.json_response({"error": "the server is shutting down"}, status=503)
        try:
            recognizer = self._recognizer(request.query.get("model"))
            data = await request.read()  # bounded by client_max_size (413 beyond)
            samples, rate = _read_clip(data)
            lo, hi = self.limits.min_sampling_rate, self.limits.max_sampling_rate
            if not lo <= rate <= hi:
                raise _Refused(f"{rate} Hz audio: the server resamples {lo}..{hi} Hz")
            duration = samples.size / rate
            if duration > self.limits.max_stream_duration_s:
                raise _Refused(
                    f"audio is {duration:.1f} s long; the limit is "
                    f"{self.limits.max_stream_duration_s:g} s"
                )
            if samples.size == 0:
                raise _Refused("the file holds no audio")
            result = await self.scheduler.transcribe(recognizer, samples, sampling_rate=rate)
        except (_Refused, AsrError) as err:
            return web.json_response({"error": str(err)}, status=400)
        except web.HTTPException:
            raise
        except Exception as err:  # a fault of ours: logged, the server keeps serving
            logger.exception("web transcribe failed")
            return web.json_response({"error": f"internal error: {err}"}, status=500)
        return web.json_response(result.to_dict())

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return web.Response(status=403, text="cross-origin WebSocket refused")
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, heartbeat=30.0)
        await ws.prepare(request)
        if not self.accepting:
            await _fail(ws, "the server is shutting down")
            return ws
        if self.num_streams >= self.limits.max_streams:
            await _fail(ws, f"the server is full ({self.limits.max_streams} streams); retry later")
            return ws
        self.num_streams += 1
        slot: StreamSlot | None = None
        reader: asyncio.Task | None = None
        wall_s = self.limits.stream_wall_limit_s
        deadline = time.monotonic() + wall_s
        try:
            try:
                first = await asyncio.wait_for(ws.receive(), timeout=min(wall_s, 30.0))
                slot = self._open(first)
                await ws.send_json({"type": "started", "sample_rate": slot.sampling_rate})
                failure: list[str] = []
                reader = asyncio.get_running_loop().create_task(self._read(ws, slot, failure))
                while True:
                    timeout = max(deadline - time.monotonic(), 0.0)
                    event = await asyncio.wait_for(slot.events.get(), timeout=timeout)
                    if event.kind == "reader_failed":
                        raise _Refused(failure[0] if failure else "the client went away")
                    if event.kind == "error":
                        raise _Refused(event.message)
                    if event.kind == "done":
                        await ws.send_json({"type": "done"})
                        break
                    message = _event_json(event)
                    if message is not None:
                        await ws.send_json(message)
            except TimeoutError:
                await _fail(ws, f"the stream was open longer than {wall_s:g} s")
            except (_Refused, AsrError) as err:
                await _fail(ws, str(err))
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception as err:  # a fault of ours: logged, the slot is freed
                logger.exception("web stream failed")
                await _fail(ws, f"internal error: {err}")
        except ConnectionError:
            pass
        finally:
            self.num_streams -= 1
            await release_stream(self.scheduler, slot, reader)
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    def _open(self, first) -> StreamSlot:
        if first.type != WSMsgType.TEXT:
            raise _Refused("the first message must be JSON: {type: 'start', sample_rate, token}")
        try:
            start = json.loads(first.data)
        except ValueError:
            raise _Refused("the first message is not valid JSON") from None
        if not isinstance(start, dict) or start.get("type") != "start":
            raise _Refused("the first message must be {type: 'start', sample_rate, token}")
        if not self._token_ok(start.get("token")):
            raise _Refused("a valid token is required (the page's ?token= parameter)")
        rate = start.get("sample_rate")
        lo, hi = self.limits.min_sampling_rate, self.limits.max_sampling_rate
        if not isinstance(rate, int) or isinstance(rate, bool) or not lo <= rate <= hi:
            raise _Refused(f"sample_rate must be an integer in {lo}..{hi}, got {str(rate)[:32]}")
        recognizer = self._recognizer(start.get("model"))
        return self.scheduler.open(recognizer, sampling_rate=rate, interim_results=True)

    async def _read(self, ws: web.WebSocketResponse, slot: StreamSlot, failure: list) -> None:
        limit_s = self.limits.max_stream_duration_s
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    if len(message.data) % 2:
                        raise _Refused("odd-length 16-bit PCM message")
                    samples = np.frombuffer(message.data, dtype="<i2").astype(np.float32)
                    samples /= 32768.0
                    if slot.received_s + samples.size / slot.sampling_rate > limit_s:
                        raise _Refused(f"the stream exceeded {limit_s:g} s of audio")
                    self.scheduler.push(slot, samples)
                elif message.type == WSMsgType.TEXT:
                    try:
                        body = json.loads(message.data)
                    except ValueError:
                        raise _Refused("a text message is not valid JSON") from None
                    if not isinstance(body, dict) or body.get("type") != "stop":
                        raise _Refused("only {type: 'stop'} may follow the start message")
                    self.scheduler.finish(slot)
                    return
                else:
                    break
            failure.append("the client closed the socket")
        except _Refused as err:
            failure.append(str(err))
        except Exception as err:  # the transport failed under us: end the stream
            failure.append(f"reading the socket failed: {err}")
        slot.events.put_nowait(StreamEvent("reader_failed"))


async def _fail(ws: web.WebSocketResponse, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json({"type": "error", "message": message[:1024]})
        await ws.close()


def _read_clip(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as snd:
            rate = int(snd.samplerate)
            samples = snd.read(dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's errors, or bytes that are no audio file at all
        raise _Refused(f"cannot read the audio file: {err}") from None
    return samples.mean(axis=1).astype(np.float32), rate


class RunningWebDemo:
    """A started demo: its ``port`` and :meth:`stop`."""

    def __init__(self, demo: WebDemo, runner: web.AppRunner, port: int) -> None:
        self.demo = demo
        self.runner = runner
        self.port = port

    async def stop(self) -> None:
        self.demo.accepting = False
        await self.runner.cleanup()


async def start_web_demo(
    demo: WebDemo,
    host: str,
    port: int,
    *,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
) -> RunningWebDemo:
    """Bind ``host:port`` (``port=0``: any free one) and serve ``demo``."""
    context = None
    if tls_cert_file is not None and tls_key_file is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert_file, tls_key_file)
    runner = web.AppRunner(demo.app, access_log=None, handle_signals=False)
    await runner.setup()
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    site = web.TCPSite(runner, literal, port, ssl_context=context, reuse_address=True)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise ServerError(f"cannot bind the web demo to {host}:{port}: {err}") from None
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return RunningWebDemo(demo, runner, bound)

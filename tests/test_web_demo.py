"""The browser demo (``asr serve --web-port``) end to end: Debian's chromium, driven by
Playwright, captures a yesno file as its fake microphone, streams it to the page's
WebSocket and shows interim and final results; the final equals ``asr transcribe``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asr.cli.main import main

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "benchmarks" / "results" / "web_demo.png"
YESNO_FILE = "0_0_1_0_1_0_0_1.wav"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not found (apt-get install chromium) for the browser demo test"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _fake_microphone_wav(source: Path, out: Path) -> Path:
    """``source`` as 16 kHz 16-bit PCM mono WAV (what Chromium's fake capture reads best)."""
    import soundfile as sf
    import soxr

    samples, rate = sf.read(source, dtype="float32")
    resampled = soxr.resample(samples, rate, 16000).astype(np.float32)
    sf.write(out, resampled, 16000, subtype="PCM_16")
    return out


def _start_server(bundle: Path, log: Path) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "asr.cli.main", "serve", "--model", str(bundle),
            "--host", "127.0.0.1", "--port", "0", "--web-port", "0", "--device", "cpu",
            "--stats-interval", "0"]  # fmt: skip
    handle = log.open("w")
    proc = subprocess.Popen(argv, cwd=REPO, stderr=handle, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"browser demo on (http://\S+)", log.read_text())
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"asr serve did not start:\n{log.read_text()}")


def test_browser_demo_streams_the_fake_microphone(
    yesno_dir, yesno_server_bundle, tmp_path, capsys
) -> None:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    wav = _fake_microphone_wav(yesno_dir / "waves_yesno" / YESNO_FILE, tmp_path / "mic.wav")
    assert main(["transcribe", "--model", str(yesno_server_bundle), "--device", "cpu",
                 "--no-progress", "--format", "json", str(wav)]) == 0  # fmt: skip
    expected_text = json.loads(capsys.readouterr().out.strip().splitlines()[0])["text"]
    assert expected_text, "asr transcribe found no words in the yesno file"

    proc, url = _start_server(yesno_server_bundle, tmp_path / "serve.log")
    assert url.startswith("http://127.0.0.1:")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=[
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            try:
                page = browser.new_page()
                page.goto(url)
                page.click("#start")
                page.wait_for_selector("#finals li.final", timeout=90_000)
                interims = int(page.get_attribute("#finals li.final", "data-interims-before") or 0)
                first_final = page.get_attribute("#finals li.final .text", "data-text")
                page.click("#stop")
                page.wait_for_function(
                    "document.getElementById('status').textContent === 'done'", timeout=30_000
                )
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                status = page.text_content("#status")
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    log = (tmp_path / "serve.log").read_text()
    assert interims >= 1, f"no interim result before the first final\n{log}"
    assert first_final == expected_text, log
    assert status == "done"
    assert SCREENSHOT.stat().st_size > 0


def test_web_demo_checks_tokens_messages_and_uploads(recognizer, yesno_dir) -> None:
    """Without a browser: the token, bad messages (an error event, then the socket closes,
    the server keeps serving), cross-origin sockets, the stream limit and the file upload."""
    import asyncio

    import aiohttp

    from server.scheduler import BatchScheduler
    from server.servicer import ServicerLimits
    from server.web_demo import WebDemo, start_web_demo

    token = "a-token-of-sixteen-chars"
    wav = (yesno_dir / "waves_yesno" / YESNO_FILE).read_bytes()
    pcm = (np.zeros(800, dtype="<i2")).tobytes()

    async def errors_of(client, *messages, headers=None) -> list[str]:
        ws = await client.ws_connect("/ws", headers=headers)
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
        out = [m.json() async for m in ws if m.type.name == "TEXT"]
        assert ws.closed
        return [m["message"] for m in out if m["type"] == "error"]

    async def scenario() -> None:
        scheduler = BatchScheduler()
        scheduler.start()
        demo = WebDemo(
            {"default": recognizer},
            scheduler,
            ServicerLimits(max_streams=1, max_stream_duration_s=1.0),
            max_message_bytes=len(wav) + 1024,
            auth_token=token,
        )
        start = json.dumps({"type": "start", "sample_rate": 8000, "token": token})
        running = await start_web_demo(demo, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{running.port}"
        async with aiohttp.ClientSession(base_url=base) as client:
            page = await client.get("/")
            assert page.status == 200 and "<title>" in await page.text()
            assert (await client.get("/static/app.js")).status == 200
            assert (await client.get("/static/../web_demo.py")).status in (403, 404)
            assert "token" in (await errors_of(client, json.dumps({"type": "start"})))[0]
            assert "JSON" in (await errors_of(client, "not json"))[0]
            assert (
                "sample_rate"
                in (await errors_of(client, json.dumps({"type": "start", "token": token})))[0]
            )
            assert "odd-length" in (await errors_of(client, start, b"\x00\x01\x02"))[0]
            assert "only {type: 'stop'}" in (await errors_of(client, start, '{"a": 1}'))[0]
            assert "exceeded 1 s" in (await errors_of(client, start, *[pcm] * 12))[0]
            bad_model = json.dumps({"type": "start", "sample_rate": 8000, "token": token,
                                    "model": "x" * 500})  # fmt: skip
            assert "unknown model" in (await errors_of(client, bad_model))[0]
            refused = await client.get("/ws", headers={"Origin": "http://evil.example"})
            assert refused.status == 403
            # a clean stream still works after all that: started ... done
            ws = await client.ws_connect("/ws")
            await ws.send_str(start)
            await ws.send_bytes(pcm)
            full = await client.ws_connect("/ws")  # max_streams=1: the second one is refused
            assert "full" in (await full.receive_json())["message"]
            await ws.send_str(json.dumps({"type": "stop"}))
            kinds = [m.json()["type"] async for m in ws if m.type.name == "TEXT"]
            assert kinds[0] == "started" and kinds[-1] == "done", kinds
            assert demo.num_streams == 0 and scheduler.num_active == 0
            # the file upload: a token, then the same result as the recognizer's own
            assert (await client.post("/transcribe", data=wav)).status == 401
            auth = {"Authorization": f"Bearer {token}"}
            bad = await client.post("/transcribe", data=b"RIFF not audio", headers=auth)
            assert bad.status == 400 and "cannot read" in (await bad.json())["error"]
            assert (await client.post("/transcribe", data=wav + wav, headers=auth)).status == 413
            demo.limits = ServicerLimits(max_streams=1)
            ok = await client.post("/transcribe", data=wav, headers=auth)
            assert ok.status == 200, await ok.text()
            expected = recognizer.transcribe(yesno_dir / "waves_yesno" / YESNO_FILE)
            assert (await ok.json())["text"] == expected.text
        await running.stop()
        await scheduler.stop()

    asyncio.run(scenario())

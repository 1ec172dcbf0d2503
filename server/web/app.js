"use strict";
// Microphone -> AudioWorklet (16-bit PCM at the context's rate) -> WebSocket -> results.
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const model = params.get("model") || "";
const $ = (id) => document.getElementById(id);
let socket = null, context = null, media = null;

function setStatus(text) { $("status").textContent = text; }

function colour(confidence) {
  const hue = Math.round(120 * Math.max(0, Math.min(1, confidence)));
  return `hsl(${hue}, 70%, 80%)`;
}

function showFinal(message) {
  const item = document.createElement("li");
  item.className = "final";
  item.dataset.interimsBefore = $("interim").dataset.count || "0";
  const time = document.createElement("span");
  time.className = "time";
  const words = message.words || [];
  const start = words.length ? words[0].start : 0;
  time.textContent = `${start.toFixed(2)}-${message.end_time.toFixed(2)} s`;
  item.appendChild(time);
  const text = document.createElement("span");
  text.className = "text";
  text.dataset.text = message.text;
  for (const w of words) {
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = w.word;
    span.style.background = colour(w.confidence);
    span.title = `${w.start.toFixed(2)}-${w.end.toFixed(2)} s, confidence ${w.confidence.toFixed(2)}`;
    text.appendChild(span);
    text.appendChild(document.createTextNode(" "));
  }
  if (!words.length) text.textContent = message.text || "(nothing)";
  item.appendChild(text);
  $("finals").appendChild(item);
  $("interim").textContent = "";
}

async function stopAudio() {
  if (media) { media.getTracks().forEach((t) => t.stop()); media = null; }
  if (context) { await context.close(); context = null; }
  $("start").disabled = false;
  $("stop").disabled = true;
}

async function start() {
  $("start").disabled = true;
  setStatus("opening the microphone");
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    context = new AudioContext();
    await context.audioWorklet.addModule("static/pcm-worklet.js");
  } catch (err) {
    setStatus(`microphone error: ${err}`);
    await stopAudio();
    return;
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  const ws = socket;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "start", sample_rate: context.sampleRate, token, model }));
    const source = context.createMediaStreamSource(media);
    const node = new AudioWorkletNode(context, "pcm-worklet");
    node.port.onmessage = (e) => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    source.connect(node);
    setStatus(`listening (${context.sampleRate} Hz)`);
    $("stop").disabled = false;
  };
  ws.onmessage = (e) => {
    const message = JSON.parse(e.data);
    if (message.type === "interim") {
      $("interim").textContent = message.text;
      $("interim").dataset.count = String(Number($("interim").dataset.count || 0) + 1);
    } else if (message.type === "final") {
      showFinal(message);
    } else if (message.type === "error") {
      setStatus(`error: ${message.message}`);
      stopAudio();
    } else if (message.type === "done") {
      setStatus("done");
    }
  };
  ws.onclose = () => {
    const status = $("status").textContent;
    if (status !== "done" && !status.startsWith("error")) setStatus("closed");
    stopAudio();
  };
}

async function stop() {
  $("stop").disabled = true;
  await stopAudio();
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "stop" }));
    setStatus("finishing");
  }
}

async function upload(file) {
  $("file-result").textContent = `transcribing ${file.name} ...`;
  const url = "transcribe" + (model ? `?model=${encodeURIComponent(model)}` : "");
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const response = await fetch(url, { method: "POST", body: file, headers });
    const body = await response.json();
    $("file-result").textContent = response.ok
      ? `${file.name}: ${body.text} (confidence ${body.confidence.toFixed(2)}, ${body.duration.toFixed(2)} s)`
      : `${file.name}: error: ${body.error}`;
  } catch (err) {
    $("file-result").textContent = `${file.name}: ${err}`;
  }
}

$("start").onclick = start;
$("stop").onclick = stop;
$("file").onchange = (e) => { if (e.target.files[0]) upload(e.target.files[0]); };
const drop = $("drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
};

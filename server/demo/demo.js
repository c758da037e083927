// The softphone page: a call over the native websocket protocol (docs/protocol.md) with
// the opt-in "turn" events, mic frames from the capture worklet, bot audio through the
// player worklet's jitter buffer, and the call panel. No framework, no build step.
import { decodeFrame, encodeFrame } from "/demo/audio.js";

const $ = (id) => document.getElementById(id);
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const PARTS = ["endpoint_wait", "asr", "nlu", "tts_first_audio"];

// What the page saw, for people (the stats box) and for the browser test.
const state = {
  status: "idle", framesSent: 0, audioFrames: 0, audioMs: 0, playedMs: 0, bufferedMs: 0,
  clears: 0, clearedMs: 0, turns: [], events: [], closeCode: null, ended: false,
};
window.demoState = state;

let config = { scenarios: [], default_scenario: "", auth: "none", path: "/native" };
let call = null; // { ws, ctx, stream, capture, player, encoding, rate }
const entities = new Map(); // turn -> entities of its intent event

function setStatus(text) {
  state.status = text;
  $("status").textContent = text;
}

function showStats() {
  $("frames-sent").textContent = String(state.framesSent);
  $("audio-frames").textContent = String(state.audioFrames);
  $("audio-ms").textContent = `${Math.round(state.audioMs)} ms`;
  $("played-ms").textContent = `${state.playedMs} ms`;
  $("buffered-ms").textContent = `${state.bufferedMs} ms`;
  $("clears").textContent = String(state.clears);
  $("cleared-ms").textContent = `${state.clearedMs} ms`;
}

async function loadConfig() {
  const response = await fetch("/demo/config.json", { cache: "no-store" });
  config = await response.json();
  const select = $("scenario");
  for (const name of config.scenarios) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    option.selected = name === config.default_scenario;
    select.append(option);
  }
  $("token-row").hidden = config.auth !== "token";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text instanceof Node) td.append(text);
  else td.textContent = text;
  row.append(td);
  return td;
}

function slotsText(event) {
  const shown = Object.entries(event.slots || {}).map(([k, v]) => `${k}=${v}`);
  const found = entities.get(event.turn) || {};
  for (const [k, v] of Object.entries(found)) {
    if (v === null || v === undefined) continue;
    shown.push(`${k}: ${event.sensitive ? "****" : String(v)}`); // masked as the slot is
  }
  return shown.join(", ") || "-";
}

function latencyCell(event) {
  const box = document.createElement("div");
  const parts = event.parts_ms || {};
  box.append(`${event.latency_ms}`);
  const bar = document.createElement("div");
  bar.className = "bar";
  const total = Math.max(event.latency_ms, 1);
  let known = 0;
  for (const name of PARTS) {
    if (!(name in parts)) continue;
    const span = document.createElement("span");
    span.className = `part ${name}`;
    span.style.width = `${Math.min(100, (100 * parts[name]) / total)}%`; // CSSOM, CSP-safe
    bar.append(span);
    known += parts[name];
  }
  const other = document.createElement("span");
  other.className = "part other";
  other.style.width = `${Math.max(0, Math.min(100, (100 * (total - known)) / total))}%`;
  bar.append(other);
  box.append(bar);
  const text = document.createElement("div");
  text.className = "parts";
  text.textContent = PARTS.filter((n) => n in parts)
    .map((n) => `${n.replace("tts_first_audio", "first audio").replace("_", " ")} ${parts[n]}`)
    .join(" · ");
  box.append(text);
  return box;
}

function addTurn(event) {
  state.turns.push(event);
  const row = document.createElement("tr");
  row.dataset.turn = String(event.turn);
  row.dataset.reply = String(event.reply);
  cell(row, String(event.turn), "num");
  const heard = event.source === "greeting" ? "(greeting)" : event.heard || `(${event.source})`;
  cell(row, heard, event.sensitive ? "heard masked" : "heard");
  const intent = document.createElement("span");
  intent.textContent = event.intent || "-";
  const conf = document.createElement("span");
  conf.className = "conf";
  conf.textContent = event.intent ? ` ${Number(event.confidence).toFixed(2)}` : "";
  const box = document.createElement("span");
  box.append(intent, conf);
  cell(row, box, "intent");
  cell(row, slotsText(event), "slots");
  cell(row, event.text, "bot");
  const rule = event.end_rule
    ? `${event.end_rule}${event.turn_score === null ? "" : ` (${event.turn_score.toFixed(2)})`}`
    : event.source;
  cell(row, event.kind === "answer" ? rule : `${rule}, ${event.kind}`, "rule");
  cell(row, latencyCell(event), "latency num");
  $("turns").tBodies[0].append(row);
}

function markInterrupted(event) {
  const row = document.querySelector(`#turns tr[data-reply="${event.reply}"] td.bot`);
  if (!row) return;
  const note = document.createElement("div");
  note.className = "interrupted";
  note.textContent = `interrupted after ${event.heard_ms} ms`;
  row.append(note);
}

function onEvent(event) {
  state.events.push(event.type);
  switch (event.type) {
    case "ready": setStatus(`in call (${event.scenario}, ${event.encoding} ${event.sample_rate_hz} Hz)`); break;
    case "intent": entities.set(event.turn, event.entities || {}); break;
    case "turn": addTurn(event); break;
    case "speech_start": $("speaking").textContent = "bot speaking…"; break;
    case "speech_end":
      $("speaking").textContent = "";
      if (event.interrupted) markInterrupted(event);
      break;
    case "clear": // barge-in: drop what is buffered, now
      call.player.port.postMessage({ type: "clear" });
      state.clears++;
      break;
    case "transfer": setStatus(`transferred to ${event.target}`); break;
    case "hangup": setStatus(`bot hung up (${event.reason})`); break;
    case "error": setStatus(`error ${event.code}: ${event.message}`); break;
    default: break;
  }
  showStats();
}

function onAudio(buffer) {
  const samples = decodeFrame(buffer, call.encoding);
  state.audioFrames++;
  state.audioMs += (samples.length * 1000) / call.rate; // before the transfer detaches it
  call.player.port.postMessage({ type: "audio", samples }, [samples.buffer]);
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = $("token").value.trim();
  return `${scheme}//${location.host}${config.path}${token ? `?token=${encodeURIComponent(token)}` : ""}`;
}

async function startCall(event) {
  event.preventDefault();
  if (call) return;
  const [encoding, rateText] = $("codec").value.split("/");
  const rate = Number(rateText);
  setStatus("opening the microphone…");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  const ctx = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
  await ctx.audioWorklet.addModule("/demo/worklet.js");
  const capture = new AudioWorkletNode(ctx, "capture", { numberOfOutputs: 1 });
  const mute = ctx.createGain();
  mute.gain.value = 0;
  ctx.createMediaStreamSource(stream).connect(capture).connect(mute).connect(ctx.destination);
  const player = new AudioWorkletNode(ctx, "player", {
    numberOfInputs: 0, outputChannelCount: [1], processorOptions: { prebufferMs: 80 },
  });
  player.connect(ctx.destination);
  player.port.onmessage = (e) => {
    Object.assign(state, { playedMs: e.data.playedMs, bufferedMs: e.data.bufferedMs,
      clearedMs: e.data.clearedMs });
    showStats();
  };
  const ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  call = { ws, ctx, stream, capture, player, encoding, rate };
  entities.clear();
  $("turns").tBodies[0].replaceChildren();
  Object.assign(state, { turns: [], events: [], ended: false, closeCode: null, framesSent: 0,
    audioFrames: 0, audioMs: 0, clears: 0 });
  setStatus("connecting…");
  $("call").disabled = true;
  $("hangup").disabled = false;
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: "start", version: 1, call_id: `demo-${crypto.randomUUID()}`, encoding,
      sample_rate_hz: rate, scenario: $("scenario").value, events: ["turn"],
    }));
    capture.port.onmessage = (e) => { // a 20 ms frame, every 20 ms, silence included
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(encodeFrame(e.data, encoding));
      state.framesSent++;
    };
  };
  ws.onmessage = (e) => (typeof e.data === "string" ? onEvent(JSON.parse(e.data)) : onAudio(e.data));
  ws.onclose = (e) => endCall(e.code, e.reason);
  ws.onerror = () => setStatus("connection failed (is the token right?)");
}

function endCall(code, reason) {
  if (!call) return;
  const { ctx, stream, capture } = call;
  capture.port.postMessage("stop");
  for (const track of stream.getTracks()) track.stop();
  state.closeCode = code;
  state.ended = true;
  const said = /^(bot|transferred|connection failed|error)/.test(state.status);
  setStatus(said ? `${state.status}; call ended (${code})`
    : `call ended (${code}${reason ? `: ${reason}` : ""})`);
  // Let the last prompt play out, then release the audio device.
  const deadline = performance.now() + 15000;
  const close = () => (state.bufferedMs > 0 && performance.now() < deadline
    ? setTimeout(close, 200) : ctx.close());
  setTimeout(close, 300);
  call = null;
  $("call").disabled = false;
  $("hangup").disabled = true;
  showStats();
}

function hangUp() {
  if (call && call.ws.readyState === WebSocket.OPEN) {
    call.ws.send(JSON.stringify({ type: "stop", reason: "caller_hangup" }));
  }
}

function sendKey(key) {
  if (call && call.ws.readyState === WebSocket.OPEN) {
    call.ws.send(JSON.stringify({ type: "dtmf", digits: key }));
  }
}

function buildKeypad() {
  for (const key of KEYS) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = key;
    button.dataset.key = key;
    button.addEventListener("click", () => sendKey(key));
    $("keypad").append(button);
  }
}

buildKeypad();
$("dial").addEventListener("submit", (e) => startCall(e).catch((err) => {
  setStatus(`could not start the call: ${err.message}`);
  call = null;
  $("call").disabled = false;
}));
$("hangup").addEventListener("click", hangUp);
loadConfig().catch((err) => setStatus(`could not load /demo/config.json: ${err.message}`));

// Line codecs of the softphone (G.711 mu-law, 16-bit PCM little-endian), as the
// server's voicebot/audio/codecs.py: Float32 samples of the Web Audio graph in,
// websocket frames out, and back.

const BIAS = 0x84;
const CLIP = 8159; // magnitude clip in the 14-bit domain
const SEG_END = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];

/** One 16-bit sample to its G.711 mu-law byte (linear2ulaw of g711.c on value >> 2). */
export function linearToMulaw(value) {
  let pcm = value >> 2;
  let mask = 0xff;
  if (pcm < 0) {
    pcm = -pcm;
    mask = 0x7f;
  }
  const magnitude = Math.min(pcm, CLIP) + (BIAS >> 2);
  let seg = 0;
  while (seg < 8 && magnitude > SEG_END[seg]) seg++;
  if (seg >= 8) return 0x7f ^ mask;
  return ((seg << 4) | ((magnitude >> (seg + 1)) & 0x0f)) ^ mask;
}

/** One G.711 mu-law byte to its 16-bit sample. */
export function mulawToLinear(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const sample = ((((u & 0x0f) << 3) + BIAS) << exponent) - BIAS;
  return u & 0x80 ? -sample : sample;
}

const MULAW_TABLE = Int16Array.from({ length: 256 }, (_, i) => mulawToLinear(i));

function toInt16(x) {
  const s = Math.max(-1, Math.min(1, x));
  return s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
}

/** A frame of Float32 samples as the call's encoding ("pcm16" or "mulaw"). */
export function encodeFrame(samples, encoding) {
  if (encoding === "mulaw") {
    const out = new Uint8Array(samples.length);
    for (let i = 0; i < samples.length; i++) out[i] = linearToMulaw(toInt16(samples[i]));
    return out.buffer;
  }
  const view = new DataView(new ArrayBuffer(samples.length * 2));
  for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, toInt16(samples[i]), true);
  return view.buffer;
}

/** A binary frame from the server (the call's encoding) as Float32 samples. */
export function decodeFrame(buffer, encoding) {
  if (encoding === "mulaw") {
    const bytes = new Uint8Array(buffer);
    const out = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) out[i] = MULAW_TABLE[bytes[i]] / 32768;
    return out;
  }
  const view = new DataView(buffer);
  const out = new Float32Array(Math.floor(buffer.byteLength / 2));
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

// The softphone's AudioWorklet processors (audio thread). The AudioContext runs at the
// call's rate (8000 or 16000 Hz): the browser resamples the microphone to it.

const FRAME_MS = 20;

// Microphone -> 20 ms Float32 frames posted to the page (which sends them).
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round((sampleRate * FRAME_MS) / 1000);
    this.frame = new Float32Array(this.size);
    this.filled = 0;
    this.live = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.live = false;
    };
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    const n = input ? input.length : 128; // no input yet: silence keeps the line's clock
    for (let i = 0; i < n; i++) {
      this.frame[this.filled++] = input ? input[i] : 0;
      if (this.filled === this.size) {
        const full = this.frame;
        this.frame = new Float32Array(this.size);
        this.filled = 0;
        this.port.postMessage(full, [full.buffer]);
      }
    }
    return this.live;
  }
}

// Bot audio: a jitter buffer (a bounded ring). Playback starts once prebufferMs is
// buffered (or the buffered tail has waited that long); "clear" (barge-in) empties it.
class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.prebuffer = Math.round((sampleRate * (opts.prebufferMs || 80)) / 1000);
    this.capacity = Math.round((sampleRate * (opts.maxBufferMs || 30000)) / 1000);
    this.ring = new Float32Array(this.capacity);
    this.read = 0;
    this.size = 0;
    this.playing = false;
    this.waited = 0;
    this.played = 0;
    this.cleared = 0;
    this.overflow = 0;
    this.sinceReport = 0;
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "audio") this.push(message.samples);
      else if (message.type === "clear") this.clear();
    };
  }

  push(samples) {
    for (let i = 0; i < samples.length; i++) {
      if (this.size === this.capacity) { // full: drop the oldest sample
        this.read = (this.read + 1) % this.capacity;
        this.size--;
        this.overflow++;
      }
      this.ring[(this.read + this.size) % this.capacity] = samples[i];
      this.size++;
    }
  }

  clear() {
    this.cleared += this.size;
    this.size = 0;
    this.playing = false;
    this.waited = 0;
    this.report();
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.size > 0) {
      this.waited += out.length;
      if (this.size >= this.prebuffer || this.waited >= this.prebuffer) this.playing = true;
    }
    for (let i = 0; i < out.length; i++) {
      if (this.playing && this.size > 0) {
        out[i] = this.ring[this.read];
        this.read = (this.read + 1) % this.capacity;
        this.size--;
        this.played++;
      } else {
        out[i] = 0;
        if (this.playing) { // drained: wait for the prebuffer again
          this.playing = false;
          this.waited = 0;
        }
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) this.report();
    return true;
  }

  report() {
    this.sinceReport = 0;
    const ms = (n) => Math.round((n * 1000) / sampleRate);
    this.port.postMessage({
      bufferedMs: ms(this.size), playedMs: ms(this.played),
      clearedMs: ms(this.cleared), overflowMs: ms(this.overflow),
    });
  }
}

registerProcessor("capture", Capture);
registerProcessor("player", Player);

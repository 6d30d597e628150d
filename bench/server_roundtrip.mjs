// Round-trip benchmark: what one turn costs a client that asks for one token (max_tokens 1)
// after a prefix the server has cached: a system prompt, then a new short user message each
// turn (every turn branches from the same prefix, so the model's work per turn is constant and
// small: the new message's prefill and one decode step). Three ways of talking to a server:
//   celer-ws    one WebSocket on /v1/responses; each turn sends only the new message and
//               previous_response_id of the first turn (store: false: the conversation stays
//               on the server, in the connection)
//   celer-sse   POST /v1/chat/completions with stream: true, system prompt and message each turn
//   llama-sse   the same request to llama-server (cache_prompt on), if --llama-server is given
// Each mode starts its own server on the same model file, alternating modes round by round.
//
//   node bench/server_roundtrip.mjs --celer build/celer --model FILE [--llama-server PATH]
//        [--turns 100] [--rounds 3] [--threads 2] [--system-words 200]
import http from 'node:http';
import WebSocket from 'ws';

import { arg, request, startCeler, startLlama, stop } from './server_common.mjs';

const celer = arg('celer', 'build/celer');
const model = arg('model', '../shared/models/stories260K.gguf');
const llamaServer = arg('llama-server', '');
const turns = Number(arg('turns', 100));
const rounds = Number(arg('rounds', 3));
const threads = arg('threads', '2');
const words = Number(arg('system-words', 200));

// A long, fixed system prompt: the cached prefix every turn shares.
const system = Array.from({ length: words }, (_, i) => ['the', 'little', 'dog', 'ran', 'to', 'a', 'big', 'tree'][i % 8]).join(' ');
const userText = (i) => `Turn ${i}: tell me one more word about the dog.`;

const celerServer = () => startCeler(celer, model, ['-t', threads, '-np', '1', '-c', '8192']);
let llamaPort = 18900;
const llamaServerNow = () => startLlama(llamaServer, model, llamaPort++, ['-t', threads, '-np', '1', '-c', '8192']);

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
// llama-server (cpp-httplib) closes a keep-alive connection after 5 requests; a request that
// meets the closed socket is sent again on a new one, and that time counts.
async function post(port, path, body) {
  try {
    return await request(port, path, body, 'POST', agent);
  } catch (e) {
    if (e.code !== 'ECONNRESET') throw e;
    return request(port, path, body, 'POST', agent);
  }
}

// Turns over SSE chat completions: the system prompt and the new message every turn.
async function runSse(port) {
  const times = [];
  for (let i = 0; i < turns; ++i) {
    const messages = [{ role: 'system', content: system }, { role: 'user', content: userText(i) }];
    const t0 = process.hrtime.bigint();
    const body = await post(port, '/v1/chat/completions', { messages, max_tokens: 1, temperature: 0, stream: true });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!body.includes('data: [DONE]')) throw new Error(`no [DONE] in ${body}`);
    // Both servers put their own timings in the last chunk before usage/[DONE].
    let t = null;
    for (const line of body.split('\n'))
      if (line.startsWith('data: {')) t = JSON.parse(line.slice(6)).timings ?? t;
    times.push({ ms, model_ms: t ? t.prompt_ms + t.predicted_ms : NaN, prompt_n: t?.prompt_n });
  }
  return times;
}

// One conversation over a WebSocket: only the new message each turn.
async function runWs(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/responses`);
  await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
  const times = [];
  let first = null;
  let waiting = null;
  ws.on('message', (data) => {
    const e = JSON.parse(data.toString());
    if (e.type === 'error') waiting.reject(new Error(e.message));
    if (e.type === 'response.completed' || e.type === 'response.incomplete') waiting.resolve(e.response);
  });
  for (let i = 0; i < turns; ++i) {
    const input = [{ type: 'message', role: 'user', content: userText(i) }];
    if (!first) input.unshift({ type: 'message', role: 'system', content: system });
    const msg = { type: 'response.create', input, max_output_tokens: 1, temperature: 0, store: false };
    if (first) msg.previous_response_id = first;
    const t0 = process.hrtime.bigint();
    const done = new Promise((resolve, reject) => (waiting = { resolve, reject }));
    ws.send(JSON.stringify(msg));
    const r = await done;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    times.push({ ms, model_ms: r.timings.prompt_ms + r.timings.predicted_ms, prompt_n: r.timings.prompt_n });
    first ??= r.id;
  }
  ws.close();
  return times;
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];

const modes = [
  ['celer-ws', celerServer, runWs],
  ['celer-sse', celerServer, runSse],
  ...(llamaServer ? [['llama-sse', llamaServerNow, runSse]] : []),
];
const all = Object.fromEntries(modes.map(([m]) => [m, []]));
for (let r = 0; r < rounds; ++r) {
  for (const [name, startFn, run] of modes) {
    const s = await startFn();
    process.stderr.write(`round ${r}: ${name} on port ${s.port}\n`);
    const times = await run(s.port);
    all[name].push(...times.slice(1));  // the first turn prefills the system prompt: not a round trip
    await stop(s);
  }
}
// Turn time, the model's own time as the server reports it, and the overhead: the difference.
const result = { model, turns, rounds, system_words: words, modes: {} };
for (const [name] of modes) {
  const t = all[name];
  const turn = t.map((x) => x.ms), overhead = t.map((x) => x.ms - x.model_ms);
  result.modes[name] = {
    turn_ms: { median: median(turn), p90: pct(turn, 0.9), p99: pct(turn, 0.99) },
    model_ms_median: median(t.map((x) => x.model_ms)),
    prompt_tokens_run_median: median(t.map((x) => x.prompt_n)),
    overhead_ms: { median: median(overhead), p90: pct(overhead, 0.9), p99: pct(overhead, 0.99) },
  };
}
const oh = (m) => result.modes[m].overhead_ms.median;
result.ws_overhead_over_sse = oh('celer-ws') / oh('celer-sse');
if (llamaServer) result.ws_overhead_over_llama = oh('celer-ws') / oh('llama-sse');
console.log(JSON.stringify(result, null, 2));

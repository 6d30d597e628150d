// Interrupt benchmark (issue 7): over one WebSocket, start a long response, cancel it after a
// few tokens, and time cancel sent -> final event received (stop latency); then redirect with a
// new instruction naming the cancelled response, and time its first token against a fresh
// request (a new socket, the same full history as input items, none of it cached). Then the
// same with one response.steer message: steer sent -> the steered response's final event, and
// steer sent -> the first token of the successor that continues it with the new words.
//
//   node bench/interrupt.mjs --celer build/celer --model FILE [--rounds 20] [--after 8] [--threads 2]
import WebSocket from 'ws';

import { arg, startCeler, stop } from './server_common.mjs';

const celer = arg('celer', 'build/celer');
const model = arg('model', '');
const rounds = Number(arg('rounds', 20));
const after = Number(arg('after', 8));
const threads = arg('threads', '2');

const words = ['def', 'return', 'self', 'value', 'for', 'in', 'range', 'if', 'else', 'import'];
const system = Array.from({ length: 1500 }, (_, i) => words[(i * 7) % words.length]).join(' ');

async function open(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/responses`);
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  let handler = null;
  ws.on('message', (d) => handler?.(JSON.parse(d.toString())));
  // Sends msg; resolves with { last, t_first, t_last }; onEvent may act on each event.
  const turn = (msg, onEvent = () => {}) =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      let tFirst = null;
      handler = (e) => {
        if (e.type === 'error') return reject(new Error(e.message));
        if (e.type === 'response.output_text.delta' && tFirst === null) tFirst = performance.now() - t0;
        onEvent(e);
        if (['response.completed', 'response.incomplete', 'response.failed'].includes(e.type)) resolve({ last: e, t_first: tFirst, t_end: performance.now() - t0 });
      };
      ws.send(JSON.stringify(msg));
    });
  return { ws, turn };
}

const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];
const s = await startCeler(celer, model, ['-t', threads, '-np', '2', '-c', '8192']);
const stopMs = [], redirectMs = [], freshMs = [], steps = [], steerStopMs = [], steerMs = [];
for (let r = 0; r < rounds; ++r) {
  const c = await open(s.port);
  const input = [{ type: 'message', role: 'system', content: system }, { type: 'message', role: 'user', content: `Task ${r}: write the module.` }];
  let deltas = 0, tCancel = 0;
  const first = await c.turn({ type: 'response.create', input, max_output_tokens: 2000, temperature: 0.8, seed: r, store: false }, (e) => {
    if (e.type === 'response.output_text.delta' && ++deltas === after) {
      tCancel = performance.now();
      c.ws.send(JSON.stringify({ type: 'response.cancel' }));
    }
  });
  stopMs.push(performance.now() - tCancel - 0);  // resolved at the final event
  const resp = first.last.response;
  const t = resp.timings;
  steps.push(t.predicted_ms / Math.max(1, t.predicted_n));
  const instruction = { type: 'message', role: 'user', content: 'No, do it with a class instead.' };
  const redirect = await c.turn({ type: 'response.create', previous_response_id: resp.id, input: [instruction], max_output_tokens: 1, store: false });
  redirectMs.push(redirect.t_end);
  c.ws.close();
  // The same history, fresh: a new socket, everything as input, and nothing of it cached (its
  // first word differs, so no slot holds any of its prefix).
  // Steering: one message stops the response and continues it with the new words.
  const st = await open(s.port);
  await new Promise((resolve, reject) => {
    let n = 0, id = null, tSteer = 0, stopped = false;
    st.ws.on('message', (d) => {
      const e = JSON.parse(d.toString());
      if (e.type === 'error' || e.type === 'response.steer.failed') return reject(new Error(JSON.stringify(e)));
      if (e.type === 'response.created' && !id) id = e.response.id;
      if (e.type === 'response.output_text.delta' && !stopped && ++n === after) {
        tSteer = performance.now();
        st.ws.send(JSON.stringify({ type: 'response.steer', previous_response_id: id, input: 'No, do it with a class instead.' }));
      }
      if (e.type === 'response.incomplete' && e.response.id === id) {
        stopped = true;
        steerStopMs.push(performance.now() - tSteer);
      }
      if (e.type === 'response.output_text.delta' && stopped) {
        steerMs.push(performance.now() - tSteer);
        st.ws.close();
        resolve();
      }
    });
    st.ws.send(JSON.stringify({ type: 'response.create', input: [input[0], { type: 'message', role: 'user', content: `Task ${r}b: write the module.` }],
      max_output_tokens: 2000, temperature: 0.8, seed: r, store: false }));
  });
  const f = await open(s.port);
  const history = [{ type: 'message', role: 'system', content: `Fresh ${r}. ${system}` }, ...input.slice(1), ...resp.output, instruction];
  const fresh = await f.turn({ type: 'response.create', input: history, max_output_tokens: 1, store: false, temperature: 0 });
  freshMs.push(fresh.t_end);
  f.ws.close();
}
await stop(s);
console.log(JSON.stringify({
  model, rounds, cancel_after_tokens: after,
  decode_step_ms_median: pct(steps, 0.5),
  stop_latency_ms: { p50: pct(stopMs, 0.5), p99: pct(stopMs, 0.99) },
  redirect_ttft_ms_median: pct(redirectMs, 0.5),
  fresh_ttft_ms_median: pct(freshMs, 0.5),
  redirect_over_fresh: pct(redirectMs, 0.5) / pct(freshMs, 0.5),
  steer_stop_ms: { p50: pct(steerStopMs, 0.5), p99: pct(steerStopMs, 0.99) },
  steer_ttft_ms_median: pct(steerMs, 0.5),
  steer_over_fresh: pct(steerMs, 0.5) / pct(freshMs, 0.5),
}, null, 2));

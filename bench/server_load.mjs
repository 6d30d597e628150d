// Load benchmark for celer serve: many concurrent streaming clients for a while, then a burst
// of clients that vanish mid-stream. Reports requests, tokens, errors, the server's memory over
// time (VmRSS from /proc), and how long the server takes to have no generation running after
// the disconnects (from /metrics).
//
//   node bench/server_load.mjs --celer build/celer --model FILE [--clients 64] [--seconds 60]
//        [--disconnects 100] [--max-tokens 32] [--threads 2] [--parallel 8]
import { readFileSync } from 'node:fs';
import http from 'node:http';

import { arg, startCeler } from './server_common.mjs';
const celer = arg('celer', 'build/celer');
const model = arg('model', '../shared/models/stories260K.gguf');
const clients = Number(arg('clients', 64));
const seconds = Number(arg('seconds', 60));
const disconnects = Number(arg('disconnects', 100));
const maxTokens = Number(arg('max-tokens', 32));

const startServer = () =>
  startCeler(celer, model, ['-t', arg('threads', '2'), '-np', arg('parallel', '8'), '-c', '1024', '--max-connections', '1024']);

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const agent = new http.Agent({ keepAlive: true, maxSockets: 4096 });

// One streaming chat request; resolves with the number of content chunks, or rejects.
function chat(port, prompt, { abortAfterFirst = false } = {}) {
  const body = JSON.stringify({ messages: [{ role: 'user', content: prompt }], stream: true, max_tokens: abortAfterFirst ? 900 : maxTokens,
    temperature: 0.8 });
  return new Promise((resolve, reject) => {
    const req = http.request({ port, path: '/v1/chat/completions', method: 'POST', agent: abortAfterFirst ? false : agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`status ${res.statusCode}`));
        res.resume();
        return;
      }
      let chunks = 0, buf = '';
      res.on('data', (d) => {
        buf += d;
        chunks += (d.toString().match(/^data: /gm) || []).length;
        if (abortAfterFirst && chunks >= 2) {
          req.destroy();
          resolve(chunks);
        }
      });
      res.on('end', () => (buf.includes('data: [DONE]') ? resolve(chunks) : reject(new Error('stream ended without [DONE]'))));
      res.on('error', (e) => (abortAfterFirst ? resolve(chunks) : reject(e)));
    });
    req.on('error', (e) => (abortAfterFirst ? resolve(0) : reject(e)));
    req.end(body);
  });
}

async function metrics(port) {
  return new Promise((resolve, reject) => {
    http.get({ port, path: '/metrics' }, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => {
        const m = {};
        for (const line of s.split('\n')) {
          const x = /^(celer_[a-z_]+) ([0-9.e+-]+)$/.exec(line);
          if (x) m[x[1]] = Number(x[2]);
        }
        resolve(m);
      });
    }).on('error', reject);
  });
}

const { proc, port } = await startServer();
const rss = [rssMiB(proc.pid)];
let requests = 0, chunks = 0, errors = 0;
const errorKinds = new Map();
const deadline = Date.now() + seconds * 1000;
const sampler = setInterval(() => rss.push(rssMiB(proc.pid)), 1000);
const t0 = Date.now();
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let i = 0; Date.now() < deadline; ++i) {
    try {
      chunks += await chat(port, `Client ${c} request ${i}: once upon a time`);
      ++requests;
    } catch (e) {
      ++errors;
      errorKinds.set(e.message, (errorKinds.get(e.message) || 0) + 1);
    }
  }
}));
const elapsed = (Date.now() - t0) / 1000;
const m1 = await metrics(port);

// Abrupt disconnects: each client reads its first token, then drops the connection.
const before = m1.celer_generations_cancelled_total || 0;
await Promise.all(Array.from({ length: disconnects }, (_, i) => chat(port, `Vanishing client ${i}`, { abortAfterFirst: true })));
const tDrop = Date.now();
let m2;
for (;;) {
  m2 = await metrics(port);
  if (m2.celer_generations_running === 0 && m2.celer_generations_waiting === 0) break;
  if (Date.now() - tDrop > 10000) break;
  await new Promise((r) => setTimeout(r, 5));
}
const drainMs = Date.now() - tDrop;
clearInterval(sampler);
rss.push(rssMiB(proc.pid));
proc.kill('SIGTERM');

const half = Math.floor(rss.length / 2);
const result = {
  clients, seconds: elapsed, requests, errors, error_kinds: Object.fromEntries(errorKinds),
  requests_per_s: requests / elapsed, generated_tokens: m1.celer_generated_tokens_total, tokens_per_s: m1.celer_generated_tokens_total / elapsed,
  rss_mib: { start: rss[0], after_warmup: rss[Math.min(5, rss.length - 1)], middle: rss[half], end: rss[rss.length - 1], max: Math.max(...rss) },
  disconnects, cancelled_by_disconnect: (m2.celer_generations_cancelled_total || 0) - before,
  running_after_disconnects: m2.celer_generations_running, ms_until_none_running: drainMs,
};
console.log(JSON.stringify(result, null, 2));
process.exit(errors === 0 && m2.celer_generations_running === 0 ? 0 : 1);

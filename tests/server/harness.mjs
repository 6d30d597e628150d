// Helpers for the `celer serve` integration tests: find the binary and the shared models, start
// and stop servers on loopback, make the synthetic Qwen model, read /metrics, and a watchdog so
// that a stuck test can never hang CI.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import OpenAI from 'openai';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

// The binary and the shared data: CELER / CELER_SHARED (how ctest passes them), else
// `--celer=PATH` / `--shared=DIR` on the command line, else the defaults of a local build.
function option(name, envName, fallback) {
  const flag = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (flag) return flag.slice(name.length + 3);
  if (process.env[envName]) return process.env[envName];
  return fallback;
}
export const CELER = path.resolve(option('celer', 'CELER', path.join(repo, 'build', 'celer')));
export const SHARED = path.resolve(option('shared', 'CELER_SHARED', path.join(repo, '..', 'shared')));
export const STORIES = path.join(SHARED, 'models', 'stories260K.gguf');
export const QWEN_VOCAB = path.join(SHARED, 'tokenizers', 'ggml-vocab-qwen2.gguf');

for (const [what, p] of [['celer binary (CELER)', CELER], ['stories260K model (CELER_SHARED)', STORIES]]) {
  if (!fs.existsSync(p)) throw new Error(`${what} not found at ${p}`);
}

// ---- temp dirs and child processes, all cleaned up on exit -----------------------------------

const tempDirs = [];
const children = new Set();

export function tempDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'celer-serve-test-'));
  tempDirs.push(d);
  return d;
}

function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
  children.clear();
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

// SIGTERMs every server still running (a test that failed half-way) and waits for them.
export async function stopAll() {
  await Promise.all(
    [...children].map(
      (c) =>
        new Promise((resolve) => {
          c.once('exit', resolve);
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
        }),
    ),
  );
}

// Kills everything and fails the run if the whole file takes longer than `seconds`.
export function watchdog(seconds) {
  const t = setTimeout(() => {
    console.error(`server tests: watchdog fired after ${seconds} s; killing servers`);
    cleanup();
    process.exit(2);
  }, seconds * 1000);
  t.unref();
}

// A tiny Qwen2-shaped model with random weights and the real Qwen2 vocabulary (FIM tokens,
// ChatML control tokens). Its text is gibberish: use it for structure and counts only.
export function synthQwen(dir = tempDir()) {
  const out = path.join(dir, 'tq.gguf');
  const r = spawnSync(CELER, ['synth', '--shape', 'tiny-qwen2', '--type', 'q8_0', '--vocab', QWEN_VOCAB, '-o', out], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`celer synth failed (${r.status}): ${r.stderr}`);
  return out;
}

// ---- servers ---------------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { sleep };

// Starts `celer serve` on a free loopback port and waits for /health. Returns
// { url, baseURL, port, child, stderr(), stop() }.
export async function startServer({ model = STORIES, store = 'none', args = [], timeoutMs = 15_000 } = {}) {
  const argv = ['serve', '-m', model, '--port', '0', '--store', store, '-t', '1', ...args];
  const child = spawn(CELER, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let err = '';
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`celer serve did not start in ${timeoutMs} ms:\n${err}`)), timeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s) => {
      err += s;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`celer serve exited (${code ?? signal}) before listening:\n${err}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`celer serve: /health not ready:\n${err}`);
    await sleep(25);
  }
  return {
    url,
    baseURL: `${url}/v1`,
    port,
    child,
    exited,
    stderr: () => err,
    // SIGTERM, then wait for the exit; returns { code, signal }.
    async stop(timeoutMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

// An SDK client for a server: no retries (a failure must show, not be hidden by a retry) and a
// short timeout.
export function client(server, { apiKey = 'unused', ...rest } = {}) {
  return new OpenAI({ apiKey, baseURL: server.baseURL, maxRetries: 0, timeout: 20_000, ...rest });
}

// The model id the server reports (the file name).
export function modelId(file) {
  return path.basename(file);
}

// ---- /metrics --------------------------------------------------------------------------------

// Prometheus text -> Map of "name{labels}" -> number.
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    m.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return m;
}

export async function metrics(server, headers = {}) {
  const r = await fetch(`${server.url}/metrics`, { headers });
  if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
  return parseMetrics(await r.text());
}

// Polls /metrics until `pred(map)` holds; returns the last map or throws after `ms`.
export async function waitMetrics(server, pred, ms = 5000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await metrics(server);
    if (pred(last)) return last;
    if (Date.now() > deadline) return last;
    await sleep(20);
  }
}

// Raw HTTP for the cases the SDK cannot express (malformed bodies, unknown routes).
export async function raw(server, method, route, { body, headers = {} } = {}) {
  const r = await fetch(server.url + route, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, headers: r.headers, text, json };
}

// ---- WebSocket -------------------------------------------------------------------------------

// A WebSocket on /v1/responses whose next() resolves with the events of one response.
export async function socket(server) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/responses`, { headers: { authorization: 'Bearer dummy' } });
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  const queue = [];
  let wake = null;
  ws.on('message', (d) => {
    queue.push(JSON.parse(d.toString()));
    wake?.();
  });
  return {
    ws,
    // Sends `msg`; resolves with the events up to the response's last (or an error).
    // `onEvent(e)` sees each event as it arrives.
    // The next event to arrive without sending anything, or null after `ms`.
    async next(ms) {
      if (!queue.length) await Promise.race([new Promise((r) => (wake = r)), new Promise((r) => setTimeout(r, ms))]);
      return queue.shift() ?? null;
    },
    async turn(msg, onEvent = () => {}) {
      ws.send(JSON.stringify(msg));
      const events = [];
      for (;;) {
        while (!queue.length) await new Promise((r) => (wake = r));
        const e = queue.shift();
        events.push(e);
        onEvent(e);
        if (['response.completed', 'response.incomplete', 'response.failed', 'error'].includes(e.type)) return events;
      }
    },
  };
}


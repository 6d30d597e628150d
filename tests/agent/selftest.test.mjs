// Self-tests of the `celer code` test infrastructure: the scripted model server and the tmux driver.
// Run: node --test tests/agent/selftest.test.mjs

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import { startScriptedServer } from './scripted_server.mjs';
import { Tmux } from './tmux.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'celer-agent-selftest-'));
const servers = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

let fileCount = 0;
async function serve(script, opts = {}) {
  const logFile = path.join(tmp, `log-${fileCount++}.jsonl`);
  const srv = await startScriptedServer({ script, logFile, ...opts });
  servers.push(srv);
  return { srv, logFile };
}

// POST /v1/responses with stream:true, parse the SSE ourselves.
async function postSse(url, body, headers = {}) {
  const res = await fetch(`${url}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ ...body, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const raw = await res.text();
  const events = [];
  for (const frame of raw.split('\n\n')) {
    if (!frame.trim()) continue;
    const lines = frame.split('\n');
    assert.match(lines[0], /^event: /, `bad frame: ${frame}`);
    assert.match(lines[1], /^data: /, `bad frame: ${frame}`);
    const name = lines[0].slice('event: '.length);
    const data = JSON.parse(lines[1].slice('data: '.length));
    assert.equal(data.type, name);
    events.push(data);
  }
  return events;
}

function checkSequence(events) {
  events.forEach((e, i) => assert.equal(e.sequence_number, i, `sequence_number of event ${i} (${e.type})`));
}

// The event types with the run of deltas collapsed into one.
function shape(events) {
  const out = [];
  for (const e of events) if (out.at(-1) !== e.type || !e.type.endsWith('.delta')) out.push(e.type);
  return out;
}

const textOf = (events) =>
  events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta)
    .join('');

const TEXT_SHAPE = [
  'response.output_item.added',
  'response.content_part.added',
  'response.output_text.delta',
  'response.output_text.done',
  'response.content_part.done',
  'response.output_item.done',
];
const CALL_SHAPE = [
  'response.output_item.added',
  'response.function_call_arguments.delta',
  'response.function_call_arguments.done',
  'response.output_item.done',
];

test('SSE: text turn, call turn, then end of script', async () => {
  const { srv, logFile } = await serve({
    turns: [
      { steps: [{ text: 'Hello, ', delay_ms: 1 }, { text: 'world!', chunk: 2, delay_ms: 1 }] },
      { steps: [{ text: 'Listing.', delay_ms: 0 }, { call: { name: 'shell', arguments: { cmd: 'ls -la' } } }] },
    ],
  });

  const health = await fetch(`${srv.url}/health`);
  assert.deepEqual(await health.json(), { status: 'ok' });
  const models = await (await fetch(`${srv.url}/v1/models`)).json();
  assert.equal(models.data[0].id, 'scripted');

  const e1 = await postSse(srv.url, { model: 'scripted', input: [{ role: 'user', content: 'hi' }] });
  checkSequence(e1);
  assert.deepEqual(shape(e1), ['response.created', 'response.in_progress', ...TEXT_SHAPE, 'response.completed']);
  assert.equal(e1[0].response.status, 'in_progress');
  assert.deepEqual(e1[0].response.output, []);
  assert.match(e1[0].response.id, /^resp_/);
  assert.equal(textOf(e1), 'Hello, world!');
  const done = e1.find((e) => e.type === 'response.output_text.done');
  assert.equal(done.text, 'Hello, world!');
  const fin = e1.at(-1).response;
  assert.equal(fin.status, 'completed');
  assert.equal(fin.model, 'scripted');
  assert.equal(fin.output.length, 1);
  assert.deepEqual(fin.output[0].content, [{ type: 'output_text', text: 'Hello, world!', annotations: [] }]);
  assert.equal(fin.usage.total_tokens, fin.usage.input_tokens + fin.usage.output_tokens);

  const logged = fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(logged.length, 1);
  assert.equal(logged[0].transport, 'sse');
  assert.deepEqual(logged[0].body.input, [{ role: 'user', content: 'hi' }]);

  const e2 = await postSse(srv.url, { model: 'scripted', input: 'go' });
  checkSequence(e2);
  assert.deepEqual(shape(e2), ['response.created', 'response.in_progress', ...TEXT_SHAPE, ...CALL_SHAPE, 'response.completed']);
  const added = e2.filter((e) => e.type === 'response.output_item.added')[1];
  assert.equal(added.output_index, 1);
  assert.equal(added.item.type, 'function_call');
  assert.equal(added.item.status, 'in_progress');
  assert.equal(added.item.arguments, '');
  assert.match(added.item.call_id, /^call_/);
  assert.match(added.item.id, /^fc_/);
  const argsDone = e2.find((e) => e.type === 'response.function_call_arguments.done');
  assert.equal(argsDone.name, 'shell');
  assert.deepEqual(JSON.parse(argsDone.arguments), { cmd: 'ls -la' });
  const out2 = e2.at(-1).response.output;
  assert.deepEqual(out2.map((i) => [i.type, i.status]), [['message', 'completed'], ['function_call', 'completed']]);
  assert.equal(out2[1].call_id, added.item.call_id);

  const e3 = await postSse(srv.url, { model: 'scripted', input: 'more' });
  assert.equal(textOf(e3), '(end of script)');
  assert.equal(e3.at(-1).type, 'response.completed');

  // Non-streaming: a plain JSON response object.
  const plain = await fetch(`${srv.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ input: 'x' }) });
  const obj = await plain.json();
  assert.equal(obj.object, 'response');
  assert.equal(obj.status, 'completed');
  assert.equal(obj.output[0].content[0].text, '(end of script)');

  const bad = await fetch(`${srv.url}/v1/responses`, { method: 'POST', body: '{nope' });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.type, 'invalid_request_error');

  assert.deepEqual(
    srv.requests().map((r) => r.transport),
    ['sse', 'sse', 'sse', 'http'],
  );
});

test('SSE: a fail step ends with response.failed', async () => {
  const { srv } = await serve({ turns: [{ steps: [{ text: 'partial', delay_ms: 0 }, { fail: 'boom' }] }] });
  const ev = await postSse(srv.url, { input: 'x' });
  checkSequence(ev);
  const last = ev.at(-1);
  assert.equal(last.type, 'response.failed');
  assert.equal(last.response.status, 'failed');
  assert.deepEqual(last.response.error, { code: 'server_error', message: 'boom' });
});

test('SSE: a client that hangs up mid-turn stops the turn quietly', async () => {
  const { srv } = await serve({
    turns: [{ steps: [{ text: 'y'.repeat(100), chunk: 1, delay_ms: 10 }] }, { steps: [{ text: 'next', delay_ms: 0 }] }],
  });
  const ac = new AbortController();
  const res = await fetch(`${srv.url}/v1/responses`, {
    method: 'POST',
    body: JSON.stringify({ input: 'x', stream: true }),
    signal: ac.signal,
  });
  const reader = res.body.getReader();
  let seen = '';
  while (!seen.includes('response.output_text.delta')) seen += new TextDecoder().decode((await reader.read()).value);
  ac.abort();
  await reader.read().catch(() => {});
  const ev = await postSse(srv.url, { input: 'y' });
  assert.equal(textOf(ev), 'next');
});

// A WebSocket client that collects events; next(pred) waits for the next matching one.
async function wsClient(url, headers = {}) {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/responses', { headers });
  const events = [];
  let waiters = [];
  ws.on('message', (data) => {
    const e = JSON.parse(data.toString());
    events.push(e);
    waiters = waiters.filter((w) => !w(e));
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const next = (pred, timeoutMs = 3000) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching event within ${timeoutMs} ms; got ${events.map((e) => e.type)}`)), timeoutMs);
      waiters.push((e) => {
        if (!pred(e)) return false;
        clearTimeout(t);
        resolve(e);
        return true;
      });
    });
  const send = (obj) => ws.send(JSON.stringify(obj));
  return { ws, events, next, send };
}

const isFinal = (e) => ['response.completed', 'response.incomplete', 'response.failed'].includes(e.type);

test('WS: a turn, a cancelled slow turn, queueing, unknown types', async () => {
  const { srv } = await serve({
    turns: [
      { steps: [{ text: 'abc', chunk: 1, delay_ms: 0 }, { call: { name: 'read', arguments: { path: 'a.txt' } } }] },
      { steps: [{ text: 'x'.repeat(200), chunk: 1, delay_ms: 20 }, { call: { name: 'never', arguments: {} } }] },
      { steps: [{ text: 'first', delay_ms: 0 }] },
      { steps: [{ sleep_ms: 30 }, { text: 'second', delay_ms: 0 }] },
    ],
  });
  const c = await wsClient(srv.url);

  c.send({ type: 'response.create', model: 'scripted', input: [{ role: 'user', content: 'one' }] });
  const completed = await c.next((e) => e.type === 'response.completed');
  const turn1 = c.events.splice(0);
  checkSequence(turn1);
  assert.deepEqual(shape(turn1), ['response.created', 'response.in_progress', ...TEXT_SHAPE, ...CALL_SHAPE, 'response.completed']);
  assert.equal(textOf(turn1), 'abc');
  assert.equal(completed.response.output[1].name, 'read');

  c.send({ type: 'response.create', model: 'scripted', input: 'two' });
  await c.next((e) => e.type === 'response.output_text.delta');
  const t0 = Date.now();
  c.send({ type: 'response.cancel' });
  const end = await c.next(isFinal, 1000);
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(end.type, 'response.incomplete');
  assert.equal(end.response.status, 'cancelled');
  const turn2 = c.events.splice(0);
  checkSequence(turn2);
  assert.ok(textOf(turn2).length < 200);
  const itemDone = turn2.find((e) => e.type === 'response.output_item.done');
  assert.equal(itemDone.item.status, 'incomplete');
  assert.deepEqual(end.response.output.map((i) => i.status), ['incomplete']);
  assert.ok(!turn2.some((e) => e.item?.type === 'function_call'));

  // Two creates at once: the second waits for the first.
  c.send({ type: 'response.create', input: 'three' });
  c.send({ type: 'response.create', input: 'four' });
  await c.next((e) => e.type === 'response.completed' && e.response.output[0]?.content[0].text === 'second');
  const both = c.events.splice(0);
  const firstEnd = both.findIndex((e) => e.type === 'response.completed');
  assert.equal(textOf(both.slice(0, firstEnd + 1)), 'first');
  assert.equal(both[firstEnd + 1].type, 'response.created');
  assert.equal(textOf(both.slice(firstEnd + 1)), 'second');

  c.send({ type: 'response.bogus' });
  const err = await c.next((e) => e.type === 'error');
  assert.match(err.error.message, /bogus/);

  const reqs = srv.requests();
  assert.ok(reqs.every((r) => r.transport === 'ws'));
  assert.deepEqual(
    reqs.map((r) => r.body.type),
    ['response.create', 'response.create', 'response.cancel', 'response.create', 'response.create', 'response.bogus'],
  );

  // Disconnecting mid-turn is quiet.
  c.send({ type: 'response.create', input: 'five' });
  await c.next((e) => e.type === 'response.created');
  c.ws.terminate();
  await new Promise((r) => setTimeout(r, 50));
  const h = await fetch(`${srv.url}/health`);
  assert.equal(h.status, 200);
});

test('expect: a mismatch answers SCRIPT MISMATCH and still consumes the turn', async () => {
  const { srv } = await serve({
    turns: [
      { expect: 'needle', steps: [{ text: 'found it' }] },
      { expect: 'needle', steps: [{ text: 'found it', delay_ms: 0 }] },
    ],
  });
  const e1 = await postSse(srv.url, { input: [{ role: 'user', content: 'haystack' }] });
  assert.match(textOf(e1), /^SCRIPT MISMATCH: expected "needle"/);
  assert.equal(e1.at(-1).type, 'response.completed');
  const e2 = await postSse(srv.url, { input: [{ role: 'user', content: 'a needle here' }] });
  assert.equal(textOf(e2), 'found it');
});

test('api key: 401 without it, on HTTP and on the WebSocket upgrade', async () => {
  const { srv } = await serve({ turns: [] }, { apiKey: 'sekrit' });
  const noKey = await fetch(`${srv.url}/health`);
  assert.equal(noKey.status, 401);
  assert.ok((await noKey.json()).error.message);
  const wrong = await fetch(`${srv.url}/v1/responses`, {
    method: 'POST',
    headers: { authorization: 'Bearer nope' },
    body: JSON.stringify({ input: 'x', stream: true }),
  });
  assert.equal(wrong.status, 401);
  const ok = await fetch(`${srv.url}/health`, { headers: { authorization: 'Bearer sekrit' } });
  assert.equal(ok.status, 200);

  const status = await new Promise((resolve, reject) => {
    const ws = new WebSocket(srv.url.replace(/^http/, 'ws') + '/v1/responses');
    ws.on('unexpected-response', (req, res) => {
      resolve(res.statusCode);
      req.destroy();
    });
    ws.on('open', () => reject(new Error('the upgrade should have been refused')));
    ws.on('error', () => {});
  });
  assert.equal(status, 401);

  const c = await wsClient(srv.url, { authorization: 'Bearer sekrit' });
  c.send({ type: 'response.create', input: 'x' });
  const end = await c.next(isFinal);
  assert.equal(end.response.output[0].content[0].text, '(end of script)');
  c.ws.close();
  assert.equal(srv.requests().length, 1); // refused requests are not logged
});

test('CLI: prints the listening line, serves, exits on SIGTERM', async () => {
  const script = path.join(tmp, 'cli-script.json');
  const log = path.join(tmp, 'cli-log.jsonl');
  fs.writeFileSync(script, JSON.stringify({ turns: [{ steps: [{ text: 'cli!', delay_ms: 0 }] }] }));
  const child = spawn(process.execPath, [path.join(here, 'scripted_server.mjs'), '--script', script, '--log', log, '--api-key', 'k'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const line = await new Promise((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d) => {
        buf += d;
        if (buf.includes('\n')) resolve(buf);
      });
      child.once('exit', (code) => reject(new Error(`exited early (${code})`)));
    });
    const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))\n$/.exec(line);
    assert.ok(m, `bad line: ${JSON.stringify(line)}`);
    const ev = await postSse(m[1], { input: 'x' }, { authorization: 'Bearer k' });
    assert.equal(textOf(ev), 'cli!');
    assert.equal(JSON.parse(fs.readFileSync(log, 'utf8').trim()).transport, 'sse');
    const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
    child.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, sig: null });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test('tmux: type, wait, exit status, env and size', async () => {
  const t = await Tmux.start(['bash', '--norc', '--noprofile'], {
    cwd: tmp,
    env: { PS1: '$ ', CELER_SELFTEST: "it's set" },
    cols: 100,
    rows: 20,
  });
  try {
    assert.equal(t.paneDead(), false);
    assert.equal(t.exitStatus(), null);
    t.type('echo "v=$CELER_SELFTEST" "$((6*7))" "$PWD"');
    t.sendKeys('Enter');
    const screen = await t.waitFor(/v=it's set 42 \//, { timeoutMs: 5000 });
    assert.ok(screen.includes(fs.realpathSync(tmp)) || screen.includes(tmp));
    t.type('tput cols; tput lines');
    t.sendKeys('Enter');
    await t.waitFor(/^100\n20$/m, { timeoutMs: 5000 });
    await assert.rejects(t.waitFor('never printed', { timeoutMs: 200 }), /timed out after 200 ms[\s\S]*last capture[\s\S]*v=it's set/);
    t.type('exit 7');
    t.sendKeys('Enter');
    const deadline = Date.now() + 5000;
    while (!t.paneDead() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(t.paneDead(), true);
    assert.equal(t.exitStatus(), 7);
    assert.match(t.capture(), /v=it's set/); // still readable after the exit
    await assert.rejects(t.waitFor('never printed', { timeoutMs: 5000 }), /exited \(status 7\)/);
  } finally {
    t.kill();
  }
  assert.throws(() => t.capture());
});

test('tmux: C-d ends cat', async () => {
  const t = await Tmux.start(['cat'], { cols: 80, rows: 10 });
  try {
    t.type('hello cat');
    t.sendKeys('Enter');
    await t.waitFor(/hello cat\nhello cat/, { timeoutMs: 5000 });
    t.sendKeys('C-d');
    const deadline = Date.now() + 5000;
    while (!t.paneDead() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(t.exitStatus(), 0);
  } finally {
    t.kill();
  }
});

// `celer pull`, `list`, `rm`, and -m NAME, end to end against a fake hub (fake_hub.mjs) on
// loopback. Run with
//   CELER=build/celer CELER_SHARED=../shared node --test tests/hub/pull.test.mjs
// (ctest passes both; without them the paths of a local build are used).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startFakeHub } from './fake_hub.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const CELER = path.resolve(process.env.CELER ?? path.join(repoRoot, 'build', 'celer'));
const SHARED = path.resolve(process.env.CELER_SHARED ?? path.join(repoRoot, '..', 'shared'));
const STORIES = path.join(SHARED, 'models', 'stories260K.gguf');

const T = { timeout: 20_000 };
const QWEN_REPO = 'Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF';
const QWEN_FILE = 'qwen2.5-coder-1.5b-instruct-q4_k_m.gguf';

// ---- helpers: temp homes, the binary, fake files; all cleaned up at the end ------------------

const homes = [];
const hubs = [];
after(async () => {
  await Promise.all(hubs.map((h) => h.close()));
  for (const d of homes) fs.rmSync(d, { recursive: true, force: true });
});

function tempHome() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'celer-hub-test-'));
  homes.push(d);
  return d;
}

async function hub(opts) {
  const h = await startFakeHub(opts);
  hubs.push(h);
  return h;
}

function bytes(n, seed = 1) {
  // Deterministic, incompressible-looking content.
  const out = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// Runs celer with a clean environment: its own cache, the fake hub, no token, no proxy.
function celer(args, { home, endpoint, env = {} }) {
  const base = { ...process.env };
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'XDG_CACHE_HOME', 'http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'all_proxy'])
    delete base[k];
  const fullEnv = { ...base, CELER_HOME: home, HF_HOME: path.join(home, 'hf'), HF_ENDPOINT: endpoint ?? 'http://127.0.0.1:9', ...env };
  return new Promise((resolve, reject) => {
    const child = spawn(CELER, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function ok(r) {
  assert.equal(r.code, 0, `celer failed (${r.code}):\n${r.stderr}`);
  return r;
}

// A port nothing listens on: bound, noted, closed.
async function deadEndpoint() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

const modelsDir = (home) => path.join(home, 'models');

// ---- pulling ----------------------------------------------------------------------------------

test('pull hf://: path on stdout, the same bytes, a .celer.json, the redirect followed', T, async () => {
  const data = bytes(300_000);
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny-Q8_0.gguf': data, 'README.md': Buffer.from('hi') } } });
  const home = tempHome();
  const r = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny-Q8_0.gguf'], { home, endpoint: h.url }));
  const want = path.join(modelsDir(home), 'acme', 'tiny-GGUF', 'tiny-Q8_0.gguf');
  assert.equal(r.stdout, `${want}\n`, 'only the path on stdout');
  assert.ok(fs.readFileSync(want).equals(data));
  const meta = JSON.parse(fs.readFileSync(`${want}.celer.json`, 'utf8'));
  assert.equal(meta.repo, 'acme/tiny-GGUF');
  assert.equal(meta.file, 'tiny-Q8_0.gguf');
  assert.equal(meta.revision, 'main');
  assert.equal(meta.sha256, sha256(data));
  assert.equal(meta.size, data.length);
  assert.match(meta.pulled_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(meta.source, `${h.url}/acme/tiny-GGUF/resolve/main/tiny-Q8_0.gguf`);
  assert.deepEqual([h.stats.tree, h.stats.resolve, h.stats.cdn], [1, 1, 1], 'tree, then resolve redirected to the CDN');
  assert.deepEqual(fs.readdirSync(path.dirname(want)).sort(), ['tiny-Q8_0.gguf', 'tiny-Q8_0.gguf.celer.json'], 'no .partial or .lock left');
  assert.match(r.stderr, /100%/);
});

test('a second pull downloads nothing and works offline', T, async () => {
  const data = bytes(50_000, 2);
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny.gguf': data } } });
  const home = tempHome();
  const first = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url }));
  const again = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url }));
  assert.equal(again.stdout, first.stdout);
  assert.match(again.stderr, /already in the cache/);
  assert.deepEqual([h.stats.tree, h.stats.resolve, h.stats.cdn], [1, 1, 1], 'no request the second time');
  const offline = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: await deadEndpoint() }));
  assert.equal(offline.stdout, first.stdout);
});

test('a short name pulls the Qwen repository file; a revision is asked for and recorded', T, async () => {
  const data = bytes(70_000, 3);
  const h = await hub({ files: { [QWEN_REPO]: { [QWEN_FILE]: data } }, revisions: ['v1.0'] });
  const home = tempHome();
  const r = ok(await celer(['pull', 'qwen2.5-coder:1.5b'], { home, endpoint: h.url }));
  const want = path.join(modelsDir(home), ...QWEN_REPO.split('/'), QWEN_FILE);
  assert.equal(r.stdout.trim(), want);
  assert.ok(fs.readFileSync(want).equals(data));
  assert.deepEqual(h.stats.treeUrls, [`/api/models/${QWEN_REPO}/tree/main`]);

  ok(await celer(['pull', 'qwen2.5-coder:1.5b', '--revision', 'v1.0'], { home, endpoint: h.url }));
  assert.equal(h.stats.treeUrls[1], `/api/models/${QWEN_REPO}/tree/v1.0`);
  assert.equal(JSON.parse(fs.readFileSync(`${want}.celer.json`, 'utf8')).revision, 'v1.0');

  const bad = await celer(['pull', 'qwen2.5-coder:1.5b', '--revision', 'nope'], { home, endpoint: h.url });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /no such revision 'nope'/);
});

test('files in folders: the tree of that folder is listed', T, async () => {
  const data = bytes(10_000, 4);
  const h = await hub({ files: { 'acme/multi': { 'q8/model-q8.gguf': data, 'top.gguf': bytes(10) } } });
  const home = tempHome();
  const r = ok(await celer(['pull', 'hf://acme/multi/q8/model-q8.gguf'], { home, endpoint: h.url }));
  assert.equal(r.stdout.trim(), path.join(modelsDir(home), 'acme', 'multi', 'q8', 'model-q8.gguf'));
  assert.deepEqual(h.stats.treeUrls, ['/api/models/acme/multi/tree/main/q8']);
});

test('a connection dropped mid-file is resumed with a Range request', T, async () => {
  const data = bytes(400_000, 5);
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny.gguf': data } }, dropAfter: { 'acme/tiny-GGUF/tiny.gguf': 150_000 } });
  const home = tempHome();
  const r = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url }));
  assert.ok(fs.readFileSync(r.stdout.trim()).equals(data), 'final bytes identical');
  assert.equal(h.stats.cdn, 2);
  assert.equal(h.stats.ranges[0], null);
  const start = Number(/^bytes=(\d+)-$/.exec(h.stats.ranges[1])?.[1]);
  assert.ok(start > 0 && start <= 150_000, `resumed from ${h.stats.ranges[1]}`);
  assert.match(r.stderr, /retrying in 0\.5 s/);
});

// A fresh CELER_HOME holding a leftover acme/tiny-GGUF/tiny.gguf.partial with these bytes.
function homeWithPartial(partial) {
  const home = tempHome();
  const dir = path.join(modelsDir(home), 'acme', 'tiny-GGUF');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tiny.gguf.partial'), partial);
  return home;
}

test('a leftover .partial is resumed, not downloaded again from zero', T, async () => {
  const data = bytes(200_000, 6);
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny.gguf': data } } });
  const home = homeWithPartial(data.subarray(0, 123_457));
  const r = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url }));
  assert.ok(fs.readFileSync(r.stdout.trim()).equals(data));
  assert.deepEqual(h.stats.ranges, ['bytes=123457-']);
  assert.equal(h.stats.cdnBytes, data.length - 123_457);
  assert.match(r.stderr, /resuming at/);
});

test('a server that ignores Range: the file starts again from zero', T, async () => {
  const data = bytes(100_000, 7);
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny.gguf': data } }, noRange: true });
  const home = homeWithPartial(Buffer.alloc(40_000, 0xee));
  const r = ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url }));
  assert.ok(fs.readFileSync(r.stdout.trim()).equals(data));
  assert.equal(h.stats.cdnBytes, data.length);
});

test('a wrong checksum fails clearly and leaves no file', T, async () => {
  const data = bytes(60_000, 8);
  const advertised = sha256(Buffer.from('something else'));
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'bad.gguf': { data, sha256: advertised } } } });
  const home = tempHome();
  const r = await celer(['pull', 'hf://acme/tiny-GGUF/bad.gguf'], { home, endpoint: h.url });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`sha256 mismatch: expected ${advertised}, got ${sha256(data)}`));
  const dir = path.join(modelsDir(home), 'acme', 'tiny-GGUF');
  assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir) : [], [], 'no file, no .partial, no .celer.json');
});

test('a file stored without LFS is checked by size only', T, async () => {
  const data = bytes(5_000, 9);
  const h = await hub({ files: { 'acme/small': { 'small.gguf': { data, lfs: false } } } });
  const home = tempHome();
  const r = ok(await celer(['pull', 'hf://acme/small/small.gguf'], { home, endpoint: h.url }));
  assert.ok(fs.readFileSync(r.stdout.trim()).equals(data));
  assert.equal(JSON.parse(fs.readFileSync(`${r.stdout.trim()}.celer.json`, 'utf8')).sha256, '');
});

test('a missing file lists the quantisations there; a split file is refused', T, async () => {
  const h = await hub({
    files: {
      [QWEN_REPO]: {
        [QWEN_FILE]: bytes(10),
        'qwen2.5-coder-1.5b-instruct-q5_k_m.gguf': bytes(10),
        'qwen2.5-coder-1.5b-instruct-q8_0-00001-of-00002.gguf': bytes(10),
        'qwen2.5-coder-1.5b-instruct-q8_0-00002-of-00002.gguf': bytes(10),
      },
    },
  });
  const home = tempHome();
  const missing = await celer(['pull', 'qwen2.5-coder:1.5b', '--quant', 'q6_k'], { home, endpoint: h.url });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no file qwen2\.5-coder-1\.5b-instruct-q6_k\.gguf/);
  assert.match(missing.stderr, /qwen2\.5-coder-1\.5b-instruct-q4_k_m\.gguf, qwen2\.5-coder-1\.5b-instruct-q5_k_m\.gguf/);
  const split = await celer(['pull', 'qwen2.5-coder:1.5b-instruct-q8_0'], { home, endpoint: h.url });
  assert.equal(split.code, 1);
  assert.match(split.stderr, /split GGUF files are not supported yet/);
  const noRepo = await celer(['pull', 'hf://nobody/nothing/x.gguf'], { home, endpoint: h.url });
  assert.match(noRepo.stderr, /nobody\/nothing: no such repository/);
  const unknown = await celer(['pull', 'llama3:8b'], { home, endpoint: h.url });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown model 'llama3:8b'.*qwen2\.5-coder:SIZE.*hf:\/\//);
  assert.equal(h.stats.cdn, 0);
  assert.deepEqual(fs.existsSync(modelsDir(home)) ? fs.readdirSync(modelsDir(home)) : [], [], 'failed pulls leave no folders');
});

test('a token: works with HF_TOKEN, fails clearly without, never reaches the CDN', T, async () => {
  const data = bytes(20_000, 10);
  const h = await hub({ files: { 'acme/private': { 'p.gguf': data } }, token: 'hf_secret' });
  const home = tempHome();
  const without = await celer(['pull', 'hf://acme/private/p.gguf'], { home, endpoint: h.url });
  assert.equal(without.code, 1);
  assert.match(without.stderr, /HF_TOKEN/);
  const wrong = await celer(['pull', 'hf://acme/private/p.gguf'], { home, endpoint: h.url, env: { HF_TOKEN: 'hf_wrong' } });
  assert.match(wrong.stderr, /the token in HF_TOKEN has no access/);
  const r = ok(await celer(['pull', 'hf://acme/private/p.gguf'], { home, endpoint: h.url, env: { HF_TOKEN: 'hf_secret' } }));
  assert.ok(fs.readFileSync(r.stdout.trim()).equals(data));
  assert.deepEqual(h.stats.cdnAuth, [null], 'the Authorization header stays with the hub host');
});

test('two pulls of one file at once: both succeed, the body is downloaded once', T, async () => {
  const data = bytes(1_000_000, 11);
  // ~16 chunks of 64 KiB, 30 ms apart: the first pull holds the lock for about half a second.
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny.gguf': data } }, chunkDelayMs: 30 });
  const home = tempHome();
  const [a, b] = await Promise.all([0, 1].map(() => celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url })));
  ok(a);
  ok(b);
  assert.equal(a.stdout, b.stdout);
  assert.ok(fs.readFileSync(a.stdout.trim()).equals(data));
  assert.equal(h.stats.cdn, 1);
  assert.equal(h.stats.cdnBytes, data.length);
  assert.match(a.stderr + b.stderr, /waiting for another celer pull/);
});

test('an unreachable endpoint (or HF_HUB_OFFLINE) says so and lists the local models', T, async () => {
  const h = await hub({ files: { 'acme/tiny-GGUF': { 'tiny.gguf': bytes(1000) } } });
  const home = tempHome();
  ok(await celer(['pull', 'hf://acme/tiny-GGUF/tiny.gguf'], { home, endpoint: h.url }));
  const endpoint = await deadEndpoint();
  const r = await celer(['pull', 'qwen2.5-coder:7b'], { home, endpoint });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`cannot reach ${endpoint} \\(.+\\); the models in the cache: acme/tiny-GGUF/tiny\\.gguf`));
  const offline = await celer(['pull', 'qwen2.5-coder:7b'], { home, endpoint: h.url, env: { HF_HUB_OFFLINE: '1' } });
  assert.equal(offline.code, 1);
  assert.match(offline.stderr, /not in the cache, and HF_HUB_OFFLINE is set; the models in the cache: acme\/tiny-GGUF\/tiny\.gguf/);
  assert.equal(h.stats.tree, 1, 'HF_HUB_OFFLINE: no request');
});

// ---- list, rm, and names after -m --------------------------------------------------------------

test('list shows pulled models; rm removes them', T, async () => {
  const h = await hub({ files: { [QWEN_REPO]: { [QWEN_FILE]: bytes(2_500_000, 12) }, 'acme/tiny-GGUF': { 'sub/t.gguf': bytes(1000) } } });
  const home = tempHome();
  const empty = ok(await celer(['list'], { home }));
  assert.equal(empty.stdout, '');
  assert.match(empty.stderr, /no models in .*celer pull qwen2\.5-coder:1\.5b/);
  const q = ok(await celer(['pull', 'qwen2.5-coder'], { home, endpoint: h.url })).stdout.trim();
  ok(await celer(['pull', 'hf://acme/tiny-GGUF/sub/t.gguf'], { home, endpoint: h.url }));

  const lines = ok(await celer(['ls'], { home })).stdout.trim().split('\n');
  assert.match(lines[0], /^NAME\s+SHORT NAME\s+SIZE\s+PATH$/);
  assert.match(lines[1], new RegExp(`^${QWEN_REPO}/${QWEN_FILE.replaceAll('.', '\\.')}\\s+qwen2\\.5-coder:1\\.5b\\s+2\\.5 MB\\s+${q}$`));
  assert.match(lines[2], /^acme\/tiny-GGUF\/sub\/t\.gguf\s+-\s+1\.0 KB\s+\S+t\.gguf$/);

  ok(await celer(['rm', 'qwen2.5-coder:1.5b'], { home }));
  assert.ok(!fs.existsSync(q) && !fs.existsSync(`${q}.celer.json`));
  assert.ok(!fs.existsSync(path.join(modelsDir(home), 'Qwen')), 'empty folders removed');
  const unknown = await celer(['rm', 'qwen2.5-coder:7b'], { home });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no model 'qwen2\.5-coder:7b' in the cache; the models in the cache: acme\/tiny-GGUF\/sub\/t\.gguf/);
  ok(await celer(['rm', 'acme/tiny-GGUF/sub/t.gguf'], { home }));
  assert.deepEqual(fs.readdirSync(modelsDir(home)), []);
});

test('run -m NAME uses the pulled model (stories260K served by the fake hub)', T, async () => {
  const data = fs.readFileSync(STORIES);
  const h = await hub({ files: { 'test/stories': { 'stories260K.gguf': data } } });
  const home = tempHome();
  const notYet = await celer(['run', '-m', 'hf://test/stories/stories260K.gguf', '-p', 'hi', '-n', '4'], { home });
  assert.equal(notYet.code, 1);
  assert.match(notYet.stderr, /not in the cache .*celer pull hf:\/\/test\/stories\/stories260K\.gguf/);
  ok(await celer(['pull', 'hf://test/stories/stories260K.gguf'], { home, endpoint: h.url }));
  const args = ['-p', 'Once upon a time', '-n', '4', '--temp', '0'];
  const byFile = ok(await celer(['run', '-m', STORIES, ...args], { home }));
  for (const name of ['hf://test/stories/stories260K.gguf', 'test/stories/stories260K.gguf']) {
    const r = ok(await celer(['run', '-m', name, ...args], { home }));
    assert.equal(r.stdout, byFile.stdout, `-m ${name}`);
  }
  assert.ok(byFile.stdout.length > 0);
  const info = ok(await celer(['info', '--model', 'test/stories/stories260K.gguf'], { home }));
  assert.match(info.stdout, /stories260K\.gguf/);
});

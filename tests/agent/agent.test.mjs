// `celer code` end to end (issue 10). The model is a scripted server (scripted_server.mjs) that
// replays fixed text and tool calls over the same WebSocket and SSE events `celer serve` sends;
// the terminal is a real tmux pane driven by send-keys and read by capture-pane. The last tests
// run the agent against a real `celer serve` for protocol coverage.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { CELER, startServer, stopAll, synthQwen, tempDir, watchdog } from '../server/harness.mjs';
import { startScriptedServer } from './scripted_server.mjs';
import { Tmux } from './tmux.mjs';

watchdog(300);
after(stopAll);

const servers = [];
after(async () => {
  for (const s of servers) await s.close();
});

// A workspace with a small buggy program, a .git folder, and a state dir for transcripts.
function setup() {
  const root = tempDir();
  const ws = path.join(root, 'ws');
  fs.mkdirSync(path.join(ws, '.git'), { recursive: true });
  fs.writeFileSync(path.join(ws, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  fs.writeFileSync(path.join(ws, 'add.sh'), 'echo $(( $1 - $2 ))\n');
  const state = path.join(root, 'state');
  const env = { XDG_STATE_HOME: state, HOME: root, TERM: 'xterm-256color', PATH: process.env.PATH };
  return { root, ws, state, env };
}

async function scripted(turns) {
  const s = await startScriptedServer({ script: { turns } });
  servers.push(s);
  return s;
}

// Runs `celer code --exec TASK`; resolves with { code, stdout, stderr }.
function exec(args, { cwd, env, timeoutMs = 60_000 }) {
  return new Promise((resolve, reject) => {
    const child = spawn(CELER, ['code', ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`celer code timed out:\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const call = (name, args) => ({ call: { name, arguments: args } });
const outputs = (req) => (req.body.input ?? []).filter((i) => i.type === 'function_call_output').map((i) => i.output);
const creates = (s) => s.requests().filter((r) => r.body.type === 'response.create' || r.transport !== 'ws');

describe('celer code --exec against a scripted model', () => {
  test('a patch edits a file and its test runs in the sandbox (WebSocket, server-side state)', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [{ text: 'Let me fix the sign. ' }, call('apply_patch', { path: 'add.sh', edits: [{ search: '$1 - $2', replace: '$1 + $2' }] })] },
      { steps: [call('run_command', { command: 'sh add.sh 2 3' })] },
      { expect: '[exit status 0]', steps: [{ text: 'Fixed: add.sh now adds.' }] },
    ]);
    const r = await exec(['--url', s.url + '/v1', '--approval', 'auto', '--exec', 'fix add.sh'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(path.join(ws, 'add.sh'), 'utf8'), 'echo $(( $1 + $2 ))\n');
    assert.match(r.stdout, /Fixed: add\.sh now adds\./);
    assert.match(r.stdout, /Let me fix the sign\./);
    const reqs = creates(s);
    assert.equal(reqs.length, 3);
    assert.ok(reqs.every((q) => q.transport === 'ws'), 'one persistent WebSocket');
    // The first turn sends the conversation; later ones only what is new, on top of the
    // response the server keeps.
    assert.equal(reqs[0].body.previous_response_id, undefined);
    assert.ok(reqs[1].body.previous_response_id && reqs[2].body.previous_response_id);
    assert.deepEqual(reqs[1].body.input.map((i) => i.type), ['function_call_output']);
    assert.match(outputs(reqs[2])[0], /^5\n[\s\S]*\[exit status 0\]/);
    assert.deepEqual(reqs[0].body.tools.map((t) => t.name).sort(), ['apply_patch', 'list_files', 'read_file', 'run_command', 'search']);
  });

  test('the same task over SSE sends the whole conversation each turn', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [call('apply_patch', { path: 'add.sh', edits: [{ search: '$1 - $2', replace: '$1 + $2' }] })] },
      { steps: [{ text: 'Done.' }] },
    ]);
    const r = await exec(['--url', s.url, '--transport', 'sse', '--approval', 'auto', '--exec', 'fix add.sh'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(fs.readFileSync(path.join(ws, 'add.sh'), 'utf8'), /\$1 \+ \$2/);
    const reqs = creates(s);
    assert.equal(reqs.length, 2);
    assert.ok(reqs.every((q) => q.transport === 'sse' && q.body.stream === true));
    assert.equal(reqs[1].body.previous_response_id, undefined);
    assert.deepEqual(reqs[1].body.input.map((i) => i.type), ['message', 'function_call', 'function_call_output']);
  });

  test('writes outside the workspace and into .git are refused', async () => {
    const { root, ws, env } = setup();
    const outside = path.join(root, 'outside.txt');
    const s = await scripted([
      { steps: [call('apply_patch', { path: '../outside.txt', edits: [{ search: '', replace: 'pwned' }] })] },
      { steps: [call('apply_patch', { path: outside, edits: [{ search: '', replace: 'pwned' }] })] },
      { steps: [call('run_command', { command: `echo pwned > ${outside}; echo x > .git/HEAD; echo inside > ok.txt` })] },
      { steps: [{ text: 'I could not write there.' }] },
    ]);
    const r = await exec(['--url', s.url, '--approval', 'auto', '--exec', 'try to escape'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!fs.existsSync(outside), 'nothing written outside the workspace');
    assert.equal(fs.readFileSync(path.join(ws, '.git', 'HEAD'), 'utf8'), 'ref: refs/heads/main\n');
    assert.equal(fs.readFileSync(path.join(ws, 'ok.txt'), 'utf8'), 'inside\n', 'the workspace itself is writable');
    const reqs = creates(s);
    assert.match(outputs(reqs[1])[0], /outside the workspace/);
    assert.match(outputs(reqs[2])[0], /outside the workspace/);
    assert.match(outputs(reqs[3])[0], /Read-only file system/);
  });

  test('the network is off in the sandbox unless allowed', async () => {
    const { ws, env } = setup();
    let connections = 0;
    const listener = net.createServer((c) => {
      connections++;
      c.end();
    });
    await new Promise((r) => listener.listen(0, '127.0.0.1', r));
    const port = listener.address().port;
    const cmd = `bash -c 'echo hi > /dev/tcp/127.0.0.1/${port}' && echo CONNECTED || echo BLOCKED`;
    try {
      const s = await scripted([{ steps: [call('run_command', { command: cmd })] }, { steps: [{ text: 'ok' }] }]);
      const r = await exec(['--url', s.url, '--approval', 'auto', '--exec', 'connect'], { cwd: ws, env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(outputs(creates(s)[1])[0], /BLOCKED/);
      assert.equal(connections, 0);

      const s2 = await scripted([{ steps: [call('run_command', { command: cmd })] }, { steps: [{ text: 'ok' }] }]);
      const r2 = await exec(['--url', s2.url, '--approval', 'auto', '--allow-network', '--exec', 'connect'], { cwd: ws, env });
      assert.equal(r2.code, 0, r2.stderr);
      assert.match(outputs(creates(s2)[1])[0], /CONNECTED/);
    } finally {
      listener.close();
    }
  });

  test('without --approval auto, --exec denies commands and edits (no one can approve)', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [call('run_command', { command: 'echo ran > ran.txt' })] },
      { steps: [call('read_file', { path: 'add.sh' })] },
      { steps: [{ text: 'ok' }] },
    ]);
    const r = await exec(['--url', s.url, '--exec', 'run it'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!fs.existsSync(path.join(ws, 'ran.txt')));
    const reqs = creates(s);
    assert.match(outputs(reqs[1])[0], /Denied/);
    assert.match(outputs(reqs[2])[0], /\$1 - \$2/, 'reads need no approval in the default mode');
  });

  test('long command output: the model gets its head and tail, the user all of it', async () => {
    const { ws, env } = setup();
    const s = await scripted([{ steps: [call('run_command', { command: 'seq 1 100000' })] }, { steps: [{ text: 'ok' }] }]);
    const r = await exec(['--url', s.url, '--approval', 'auto', '--exec', 'count'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\n99999\n100000\n/, 'the user sees every line');
    const out = outputs(creates(s)[1])[0];
    assert.ok(out.length < 20_000, `bounded for the model (${out.length} bytes)`);
    assert.match(out, /^1\n2\n3\n/);
    assert.match(out, /omitted/);
    assert.match(out, /100000\n\[exit status 0\]$/);
  });

  test('commands cannot reach the transcript; a resumed call with no output gets one', async () => {
    const { ws, env, root } = setup();
    const session = path.join(root, 'session.jsonl');
    const s = await scripted([
      { steps: [call('run_command', { command: 'for f in /proc/$$/fd/*; do readlink $f; done' })] },
      { steps: [{ text: 'ok' }] },
    ]);
    const r = await exec(['--url', s.url, '--approval', 'auto', '--session', session, '--exec', 'fds'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(outputs(creates(s)[1])[0], /session\.jsonl/, 'the transcript is not open in the command');

    // A session cut inside a tool call: the call has no output yet.
    const cut = path.join(root, 'cut.jsonl');
    const lines = [
      { type: 'session', version: 1, workspace: fs.realpathSync(ws), model: 'scripted' },
      { type: 'item', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'build it' }] } },
      { type: 'item', item: { type: 'function_call', call_id: 'call_9', name: 'run_command', arguments: '{"command":"make"}' } },
    ];
    fs.writeFileSync(cut, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const s2 = await scripted([{ steps: [{ text: 'resumed fine' }] }]);
    const r2 = await exec(['--url', s2.url, '--resume', '--session', cut, '--exec', 'go on'], { cwd: ws, env });
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /resumed fine/);
    const input = creates(s2)[0].body.input;
    assert.deepEqual(input.map((i) => i.type), ['message', 'function_call', 'function_call_output', 'message']);
    assert.equal(input[2].call_id, 'call_9');
  });

  test('a server that is not there, or refuses the key, is a clear error', async () => {
    const { ws, env } = setup();
    const r = await exec(['--url', 'http://127.0.0.1:9/v1', '--exec', 'x'], { cwd: ws, env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot connect to 127\.0\.0\.1:9/);
    const s = await startScriptedServer({ script: { turns: [] }, apiKey: 'sekrit' });
    servers.push(s);
    const r2 = await exec(['--url', s.url, '--api-key', 'wrong', '--exec', 'x'], { cwd: ws, env });
    assert.match(r2.stderr, /401/);
    const r3 = await exec(['--url', s.url, '--api-key', 'sekrit', '--exec', 'x'], { cwd: ws, env });
    assert.equal(r3.code, 0, r3.stderr);
    assert.match(r3.stdout, /end of script/);
  });
});

// ---- the terminal UI ----------------------------------------------------------------------------

async function tui(args, { ws, env }) {
  const t = await Tmux.start([CELER, 'code', ...args], { cwd: ws, env, cols: 120, rows: 40 });
  await t.waitFor('/help for commands');
  return t;
}

describe('celer code in a terminal (tmux)', () => {
  test('Esc interrupts mid-stream and sends the queued redirect at once', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [{ text: 'Indenting with spaces: ' + 'space '.repeat(200), chunk: 6, delay_ms: 40 }] },
      { expect: 'use tabs', steps: [{ text: 'Switching to tabs as asked.' }] },
    ]);
    const t = await tui(['--url', s.url], { ws, env });
    try {
      t.type('reindent add.sh');
      t.sendKeys('Enter');
      await t.waitFor('Indenting with spaces: space space');
      t.type('no, use tabs');
      t.sendKeys('Enter');
      await t.waitFor('queued: no, use tabs');
      t.sendKeys('Escape');
      await t.waitFor('Switching to tabs as asked.');
      const reqs = s.requests();
      assert.ok(reqs.some((r) => r.body.type === 'response.cancel'), 'the running response was cancelled');
      const second = creates(s)[1].body;
      const texts = JSON.stringify(second.input);
      assert.match(texts, /Indenting with spaces: space/, 'the partial answer stays in the conversation');
      assert.match(texts, /no, use tabs/);
      assert.ok(!JSON.stringify(creates(s)[1]).includes('space '.repeat(200)), 'not the whole scripted text');
    } finally {
      t.kill();
    }
  });

  test('Esc stops, one Ctrl-C stops, a second Ctrl-C exits', async () => {
    const { ws, env } = setup();
    const slow = { steps: [{ text: 'x'.repeat(600), chunk: 2, delay_ms: 30 }] };
    const s = await scripted([slow, slow]);
    const t = await tui(['--url', s.url], { ws, env });
    try {
      t.type('go');
      t.sendKeys('Enter');
      await t.waitFor('xxxxxxxx');
      t.sendKeys('Escape');
      await t.waitFor('● interrupted');
      t.type('again');
      t.sendKeys('Enter');
      await t.waitFor(/> again[\s\S]*xxxxxxxx/);
      t.sendKeys('C-c');
      await t.waitFor(/interrupted[\s\S]*> again[\s\S]*● interrupted/);
      t.sendKeys('C-c');
      for (let i = 0; i < 100 && !t.paneDead(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(t.paneDead(), 'two Ctrl-C exit');
      assert.equal(t.exitStatus(), 0);
    } finally {
      t.kill();
    }
  });

  test('Esc stops a running command; a line typed while one runs is sent at the next step', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [call('run_command', { command: 'echo started; sleep 61.2345; echo never' })] },
      { steps: [call('run_command', { command: 'echo first; sleep 3; echo second' })] },
      { expect: 'also check the README', steps: [{ text: 'Checked the README too.' }] },
    ]);
    const t = await tui(['--url', s.url, '--approval', 'auto'], { ws, env });
    try {
      t.type('run the slow thing');
      t.sendKeys('Enter');
      await t.waitFor(/^started$/m);
      t.sendKeys('Escape');
      await t.waitFor('[stopped: the user interrupted the command]');
      await t.waitFor('● interrupted');
      assert.equal(creates(s).length, 1, 'nothing sent after a plain interrupt');
      // The sandbox's processes die with its PID namespace, which the kernel tears down just
      // after the agent reaps bwrap: give it a moment.
      let left = 'x';
      for (let i = 0; i < 40 && left; i++) {
        left = spawnSync('pgrep', ['-f', 'sleep 61.2345'], { encoding: 'utf8' }).stdout.trim();
        if (left) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(left, '', 'the command and its children were killed');

      t.type('now the quick one');
      t.sendKeys('Enter');
      await t.waitFor(/^first$/m);
      t.type('also check the README');
      t.sendKeys('Enter');
      await t.waitFor('Checked the README too.');
      const third = creates(s)[2].body.input;
      assert.deepEqual(third.map((i) => i.type), ['function_call_output', 'message'], 'the tool result, then the queued line');
      assert.match(third[0].output, /first\nsecond/);
      assert.match(JSON.stringify(third[1]), /also check the README/);
      const second = creates(s)[1].body.input;
      assert.match(JSON.stringify(second), /interrupted the command/, 'the model learns the command was stopped');
    } finally {
      t.kill();
    }
  });

  test('what the model or a command prints cannot clear the screen; \\r redraws a line', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [{ text: 'before the trap. A\u001b[2J\u001b[HB\u001b]52;c;aGVsbG8=\u0007C wide 漢字 done.' }] },
      { steps: [call('run_command', { command: "printf 'progress 10%%\\rprogress 55%%\\rprogress 100%%\\n'" })] },
      { steps: [{ text: 'finished.' }] },
    ]);
    const t = await tui(['--url', s.url, '--approval', 'auto'], { ws, env });
    try {
      t.type('one');
      t.sendKeys('Enter');
      await t.waitFor('done.');
      t.type('two');
      t.sendKeys('Enter');
      const screen = await t.waitFor('finished.');
      assert.match(screen, /before the trap\. ABC wide 漢字 done\./, 'the escapes were dropped, the text kept');
      assert.match(screen, /celer code in/, 'nothing cleared the screen');
      assert.match(screen, /^progress 100%$/m);
      assert.doesNotMatch(screen, /^progress 10%/m);
    } finally {
      t.kill();
    }
  });

  test('in the terminal too: a write outside the workspace is refused and the network is off', async () => {
    const { root, ws, env } = setup();
    const outside = path.join(root, 'outside.txt');
    const listener = net.createServer((c) => c.end());
    await new Promise((r) => listener.listen(0, '127.0.0.1', r));
    const port = listener.address().port;
    const s = await scripted([
      { steps: [call('apply_patch', { path: '../outside.txt', edits: [{ search: '', replace: 'pwned' }] })] },
      { steps: [call('run_command', { command: `echo pwned > ${outside}; bash -c 'echo > /dev/tcp/127.0.0.1/${port}' 2>/dev/null && echo CONNECTED || echo NO-NETWORK` })] },
      { steps: [{ text: 'Both were stopped.' }] },
    ]);
    const t = await tui(['--url', s.url, '--approval', 'auto'], { ws, env });
    try {
      t.type('escape');
      t.sendKeys('Enter');
      const screen = await t.waitFor('Both were stopped.');
      assert.match(screen, /apply_patch: outside the workspace/);
      assert.match(screen, /^NO-NETWORK$/m);
      // The command's write went to the sandbox's private /tmp (the test's folders are under
      // /tmp), which vanished with it: the host has no such file.
      assert.ok(!fs.existsSync(outside));
    } finally {
      t.kill();
      listener.close();
    }
  });

  test('an idle session answers the server\'s pings and keeps its connection and state', async () => {
    const { ws, env } = setup();
    const s = await startScriptedServer({
      script: { turns: [{ steps: [{ text: 'First answer.' }] }, { steps: [call('run_command', { command: 'sleep 1.2; echo slept' })] }, { steps: [{ text: 'Second answer.' }] }] },
      pingEveryMs: 250,
    });
    servers.push(s);
    const t = await tui(['--url', s.url, '--approval', 'auto'], { ws, env });
    try {
      t.type('one');
      t.sendKeys('Enter');
      await t.waitFor('First answer.');
      await new Promise((r) => setTimeout(r, 1200)); // at the prompt through four pings
      t.type('two');
      t.sendKeys('Enter');
      await t.waitFor('Second answer.'); // and through a command that runs as long
      assert.equal(s.dropped(), 0, 'no connection dropped for unanswered pings');
      assert.equal(s.sockets(), 1, 'one WebSocket for the whole session');
      assert.ok(creates(s)[1].body.previous_response_id, 'the server-side state was used');
    } finally {
      t.kill();
    }
  });

  test('a denied approval leaves the file alone and tells the model', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [call('apply_patch', { path: 'add.sh', edits: [{ search: '$1 - $2', replace: '$1 * $2' }] })] },
      { expect: 'denied', steps: [{ text: 'Understood, leaving it.' }] },
    ]);
    const t = await tui(['--url', s.url], { ws, env });
    try {
      t.type('multiply');
      t.sendKeys('Enter');
      const screen = await t.waitFor('[y] yes');
      assert.match(screen, /allow\? edit add\.sh/);
      assert.match(screen, /-echo \$\(\( \$1 - \$2 \)\)|-\$1 - \$2/, 'the edit is shown as a diff before approval');
      t.type('n');
      await t.waitFor('Understood, leaving it.');
      assert.equal(fs.readFileSync(path.join(ws, 'add.sh'), 'utf8'), 'echo $(( $1 - $2 ))\n');
    } finally {
      t.kill();
    }
  });

  test('an approved patch shows its diff, and /undo puts the file back', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [call('apply_patch', { path: 'add.sh', edits: [{ search: '$1 - $2', replace: '$1 + $2' }] })] },
      { steps: [call('run_command', { command: 'sh add.sh 40 2' })] },
      { expect: '42', steps: [{ text: 'It prints 42 now.' }] },
    ]);
    const t = await tui(['--url', s.url], { ws, env });
    try {
      t.type('fix add.sh');
      t.sendKeys('Enter');
      await t.waitFor('allow? edit add.sh');
      t.type('y');
      await t.waitFor('allow? run `sh add.sh 40 2`');
      assert.equal(fs.readFileSync(path.join(ws, 'add.sh'), 'utf8'), 'echo $(( $1 + $2 ))\n');
      t.type('y');
      // The text comes before the final event: wait for the status line to say so too.
      const screen = await t.waitFor(/It prints 42 now\.[\s\S]*ready/);
      assert.match(screen, /\+echo \$\(\( \$1 \+ \$2 \)\)/);
      assert.match(screen, /\[exit status 0\]/);
      assert.match(screen, /ready/, 'the status line');
      t.type('/undo');
      t.sendKeys('Enter');
      for (let i = 0; i < 100 && fs.readFileSync(path.join(ws, 'add.sh'), 'utf8').includes('+'); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(fs.readFileSync(path.join(ws, 'add.sh'), 'utf8'), 'echo $(( $1 - $2 ))\n');
    } finally {
      t.kill();
    }
  });

  test('/compact keeps only the summary, /clear forgets, /model renames', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [{ text: 'The answer is 42.' }] },
      { expect: 'Summarise this conversation', steps: [{ text: 'SUMMARY: user asked; answer 42.' }] },
      { expect: 'SUMMARY: user asked', steps: [{ text: 'Still 42.' }] },
      { steps: [{ text: 'Fresh start.' }] },
    ]);
    const t = await tui(['--url', s.url], { ws, env });
    try {
      t.type('what is the answer?');
      t.sendKeys('Enter');
      await t.waitFor('The answer is 42.');
      t.type('/compact');
      t.sendKeys('Enter');
      await t.waitFor('compacted');
      t.type('and now?');
      t.sendKeys('Enter');
      await t.waitFor('Still 42.');
      let reqs = creates(s);
      assert.equal(reqs[2].body.previous_response_id, undefined, 'a compacted conversation starts over on the server');
      assert.deepEqual(reqs[2].body.input.map((i) => i.role), ['user', 'user']);
      assert.equal(reqs[1].body.tools, undefined, 'no tools while summarising');
      t.type('/model other-model');
      t.sendKeys('Enter');
      await t.waitFor('model: other-model');
      t.type('/clear');
      t.sendKeys('Enter');
      await t.waitFor('the conversation is cleared');
      t.type('hi');
      t.sendKeys('Enter');
      await t.waitFor('Fresh start.');
      reqs = creates(s);
      assert.equal(reqs[3].body.model, 'other-model');
      assert.equal(reqs[3].body.previous_response_id, undefined);
      assert.equal(reqs[3].body.input.length, 1);
    } finally {
      t.kill();
    }
  });

  test('after a crash, --resume continues the conversation with nothing lost', async () => {
    const { ws, env } = setup();
    const s = await scripted([
      { steps: [{ text: 'The plan: step one, rename; step two, ' + 'test '.repeat(300), chunk: 5, delay_ms: 30 }] },
      { expect: 'step one, rename', steps: [{ text: 'Continuing from step two.' }] },
    ]);
    const t = await tui(['--url', s.url], { ws, env });
    let t2;
    try {
      t.type('make a plan');
      t.sendKeys('Enter');
      await t.waitFor('step two, test test');
      const pid = spawnSync('tmux', [...t._base, 'display-message', '-p', '-t', t.target, '#{pane_pid}'], { encoding: 'utf8' }).stdout.trim();
      process.kill(Number(pid), 'SIGKILL');
      for (let i = 0; i < 100 && !t.paneDead(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(t.paneDead());
      t2 = await tui(['--url', s.url, '--resume'], { ws, env });
      await t2.waitFor(/resumed 2 items \(the last answer was cut short\)/);
      t2.type('go on');
      t2.sendKeys('Enter');
      await t2.waitFor('Continuing from step two.');
    } finally {
      t.kill();
      t2?.kill();
    }
  });
});

// ---- against a real celer serve -----------------------------------------------------------------

describe('celer code against celer serve', () => {
  test('-m starts a local server; --exec streams an answer and writes the transcript', async () => {
    const { ws, env, state } = setup();
    const model = synthQwen();
    const r = await exec(['-m', model, '-t', '1', '-c', '1024', '--max-output-tokens', '24', '--exec', 'Say hello.'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /websocket/);
    const dir = path.join(state, 'celer', 'sessions');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl'));
    assert.equal(files.length, 1);
    const lines = fs.readFileSync(path.join(dir, files[0]), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines[0].type, 'session');
    assert.ok(lines.some((l) => l.type === 'item' && l.item.role === 'user'));
  });

  test('two turns on one WebSocket, the second on top of the first (previous_response_id)', async () => {
    const { ws, env } = setup();
    const server = await startServer({ model: synthQwen(), args: ['-c', '2048'] });
    const t = await tui(['--url', server.baseURL, '--max-output-tokens', '16'], { ws, env });
    try {
      t.type('first question');
      t.sendKeys('Enter');
      await t.waitFor(/> first question[\s\S]*ready/);
      t.type('second question');
      t.sendKeys('Enter');
      const screen = await t.waitFor(/> second question[\s\S]*ready/);
      assert.doesNotMatch(screen, /● error/);
      assert.match(screen, /websocket/);
      assert.match(screen, /ctx \d+\/2048/);
    } finally {
      t.kill();
    }
  });

  test('SSE, and Esc cancelling a long answer on the server', async () => {
    const { ws, env } = setup();
    const server = await startServer({ model: synthQwen(), args: ['-c', '16384'] });
    const r = await exec(['--url', server.baseURL, '--transport', 'sse', '--max-output-tokens', '8', '--exec', 'hi'], { cwd: ws, env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\(sse\)/);
    assert.doesNotMatch(r.stderr, /error/);

    const t = await tui(['--url', server.baseURL], { ws, env });
    try {
      t.type('write a very long story');
      t.sendKeys('Enter');
      await t.waitFor(/streaming/);
      t.sendKeys('Escape');
      await t.waitFor('● interrupted');
      const m = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(m, /celer_generations_cancelled_total [1-9]/, m.split('\n').filter((l) => /cancel/.test(l)).join('\n'));
    } finally {
      t.kill();
    }
  });
});

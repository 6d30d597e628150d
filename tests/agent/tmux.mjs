// A small tmux driver for the `celer code` terminal tests. Every Tmux runs its own private tmux
// server (`tmux -L celer-test-<pid>-<n>`, no user config), one session with one pane running the
// given command. `remain-on-exit` is on, so a program that exits or crashes leaves its pane (and
// its last screen) readable. All servers still alive are killed when the process exits.
//
//   const t = await Tmux.start(['./build/celer', 'code'], {cwd, env: {K: 'V'}, cols: 120, rows: 40});
//   t.type('hello'); t.sendKeys('Enter');
//   const screen = await t.waitFor(/done/);
//   t.paneDead(); t.exitStatus(); t.kill();

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

const live = new Set();
let counter = 0;

function killAll() {
  for (const t of live) {
    try {
      spawnSync('tmux', [...t._base, 'kill-server'], { stdio: 'ignore', timeout: 2000 });
    } catch {}
    t._unlinkSocket();
  }
  live.clear();
}
process.on('exit', killAll);
// On SIGINT/SIGTERM clean up, then keep the default behaviour (die of the signal) unless someone
// else handles it.
for (const sig of ['SIGINT', 'SIGTERM']) {
  const handler = () => {
    killAll();
    if (process.listenerCount(sig) === 1) {
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    }
  };
  process.on(sig, handler);
}

function shellQuote(s) {
  s = String(s);
  if (/^[A-Za-z0-9_\-.,:/=@%+]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

// The environment the tmux server itself starts with: ours, minus what would tie it to an outer tmux.
function tmuxEnv() {
  const env = { ...process.env };
  delete env.TMUX;
  delete env.TMUX_PANE;
  return env;
}

export class Tmux {
  constructor(socketName) {
    this.socketName = socketName;
    this.target = 'main';
    this._base = ['-L', socketName, '-f', '/dev/null'];
    this._killed = false;
    this.socketPath = null;
  }

  _unlinkSocket() {
    if (!this.socketPath) return;
    try {
      fs.unlinkSync(this.socketPath);
    } catch {}
  }

  // command: argv array. env: extra variables for the program (on top of this process's).
  static async start(command, { cwd = process.cwd(), env = {}, cols = 120, rows = 40 } = {}) {
    if (!Array.isArray(command) || command.length === 0) throw new Error('Tmux.start: command must be a non-empty argv array');
    const t = new Tmux(`celer-test-${process.pid}-${counter++}`);
    const assigns = Object.entries(env)
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`Tmux.start: bad environment variable name ${k}`);
        return shellQuote(`${k}=${v}`);
      });
    const shellCmd = `exec env ${assigns.join(' ')} ${command.map(shellQuote).join(' ')}`.replace(/ +/g, ' ');
    live.add(t);
    try {
      // One command list, so the options are set before the program can possibly exit.
      await execFileP(
        'tmux',
        [
          ...t._base,
          'set-option', '-g', 'remain-on-exit', 'on', ';',
          'set-option', '-g', 'history-limit', '5000', ';',
          'set-option', '-g', 'status', 'off', ';',
          // A clear from the top row would otherwise push the screen into the scrollback (tmux
          // 3.2+), leaving copies of a redrawn footer in every capture.
          'set-option', '-wg', 'scroll-on-clear', 'off', ';',
          'new-session', '-d', '-s', t.target, '-x', String(cols), '-y', String(rows), '-c', cwd, shellCmd,
        ],
        { env: tmuxEnv(), timeout: 10000 },
      );
      const { stdout } = await execFileP('tmux', [...t._base, 'display-message', '-p', '-t', t.target, '#{socket_path}'], {
        env: tmuxEnv(),
        timeout: 5000,
      });
      t.socketPath = stdout.trim() || null;
    } catch (e) {
      t.kill();
      throw new Error(`Tmux.start failed: ${e.stderr || e.message}`);
    }
    return t;
  }

  _run(args) {
    return execFileSync('tmux', [...this._base, ...args], { encoding: 'utf8', env: tmuxEnv(), timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  // Keys as tmux names them: 'Enter', 'Escape', 'C-c', 'Up', 'BSpace', ...
  sendKeys(...keys) {
    if (keys.length) this._run(['send-keys', '-t', this.target, ...keys]);
  }

  // Literal text (no key-name lookup).
  type(text) {
    if (text !== '') this._run(['send-keys', '-t', this.target, '-l', '--', String(text)]);
  }

  _captureArgs() {
    return ['capture-pane', '-p', '-J', '-S', '-2000', '-t', this.target];
  }

  static _tidy(text) {
    return text.replace(/\s+$/, '') + '\n';
  }

  // The pane's text, scrollback included, with trailing blank lines dropped.
  capture() {
    return Tmux._tidy(this._run(this._captureArgs()));
  }

  // Same, without blocking the event loop.
  async captureAsync() {
    const { stdout } = await execFileP('tmux', [...this._base, ...this._captureArgs()], { env: tmuxEnv(), timeout: 5000 });
    return Tmux._tidy(stdout);
  }

  // {dead, status, signal}. tmux 3.3 can mark a pane dead (pty closed) before it has reaped the
  // child, and sometimes misses that SIGCHLD for good; running any job in the server makes it
  // reap again, so nudge it until the status is there.
  _paneState() {
    const query = () => {
      const [dead, status, signal] = this._run(['display-message', '-p', '-t', this.target, '#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}'])
        .trim()
        .split('|');
      const num = (v) => (v === undefined || v === '' ? null : Number(v));
      return { dead: dead === '1', status: num(status), signal: num(signal) };
    };
    let st = query();
    for (let i = 0; i < 5 && st.dead && st.status === null && st.signal === null; i++) {
      this._run(['run-shell', 'true']);
      st = query();
    }
    return st;
  }

  paneDead() {
    return this._paneState().dead;
  }

  // The program's exit status once the pane is dead (128 + N when killed by signal N), else null.
  exitStatus() {
    const s = this._paneState();
    if (!s.dead) return null;
    if (s.status !== null) return s.status;
    return s.signal !== null ? 128 + s.signal : null;
  }

  // The signal that killed the program, or null.
  exitSignal() {
    const s = this._paneState();
    return s.dead ? s.signal : null;
  }

  // Polls the pane every 50 ms until it matches; resolves with the captured text. Rejects on
  // timeout, or early when the pane is dead and still doesn't match, with the last capture.
  async waitFor(pattern, { timeoutMs = 15000 } = {}) {
    const matches = (text) => (pattern instanceof RegExp ? pattern.test(text) : text.includes(String(pattern)));
    const deadline = Date.now() + timeoutMs;
    let last = '';
    let deadSeen = false;
    for (;;) {
      try {
        last = await this.captureAsync();
      } catch (e) {
        throw new Error(`waitFor(${pattern}): capture failed: ${e.stderr || e.message}\n--- last capture ---\n${last}`);
      }
      if (matches(last)) return last;
      if (deadSeen) {
        throw new Error(`waitFor(${pattern}): the program exited (status ${this.exitStatus()}) without printing it\n--- last capture ---\n${last}`);
      }
      if (Date.now() >= deadline) {
        throw new Error(`waitFor(${pattern}): timed out after ${timeoutMs} ms\n--- last capture ---\n${last}`);
      }
      await new Promise((r) => setTimeout(r, 50));
      try {
        deadSeen = this.paneDead(); // one more capture after this, then give up
      } catch {}
    }
  }

  kill() {
    if (this._killed) return;
    this._killed = true;
    live.delete(this);
    try {
      spawnSync('tmux', [...this._base, 'kill-server'], { stdio: 'ignore', env: tmuxEnv(), timeout: 5000 });
    } catch {}
    this._unlinkSocket();
  }
}

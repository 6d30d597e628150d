// What the server benchmarks share: options, starting a server and waiting for it, plain HTTP.
import { spawn } from 'node:child_process';
import http from 'node:http';

// The value after --NAME on the command line, or `def`.
export const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};

// Starts `cmd args`; resolves with { proc, port } once ready(log so far) returns a port.
export function start(cmd, args, ready) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    const on = (d) => {
      log += d;
      const m = ready(log);
      if (m) resolve({ proc: p, port: m });
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (code) => reject(new Error(`${cmd} exited (${code}): ${log.slice(-2000)}`)));
  });
}

// celer serve on a free port with the given extra arguments.
export const startCeler = (celer, model, args) =>
  start(celer, ['serve', '-m', model, '--port', '0', '--store', 'none', ...args], (log) => Number(/listening on http:\/\/[^:]+:(\d+)/.exec(log)?.[1]) || 0);

// llama-server on `port`, once its model is loaded (/health answers 200).
export async function startLlama(llamaServer, model, port, args) {
  const s = await start(llamaServer, ['-m', model, '--port', String(port), ...args], (log) => (/server is listening|HTTP server listening/.test(log) ? port : 0));
  for (;;) {
    try {
      await request(port, '/health', null, 'GET');
      return s;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function stop(s) {
  s.proc.kill('SIGTERM');
  await new Promise((res) => s.proc.once('exit', res));
}

// One request on a fresh connection (or `agent`); resolves with the body, rejects on non-200.
export function request(port, path, body, method = 'POST', agent = false) {
  const data = body ? JSON.stringify(body) : '';
  return new Promise((resolve, reject) => {
    const req = http.request({ port, path, method, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
      (res) => {
        let s = '';
        res.on('data', (d) => (s += d));
        res.on('end', () => {
          if (res.statusCode === 200) return resolve(s);
          const e = new Error(`${res.statusCode}: ${s}`);
          reject(e);
        });
      });
    req.on('error', reject);
    req.end(data);
  });
}

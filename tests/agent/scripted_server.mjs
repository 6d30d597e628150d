// A scripted model server for the `celer code` tests: it speaks the Responses API (SSE over HTTP,
// a plain JSON answer, and the WebSocket mode) and replays the turns of a JSON script instead of
// running a model. The events it emits have the same shape and order as `celer serve`'s.
//
// Module:  const srv = await startScriptedServer({script, logFile, apiKey, port});
//          srv.url, srv.port, srv.requests(), await srv.close()
// CLI:     node scripted_server.mjs --script FILE --log FILE [--api-key K] [--port N]
//          prints `listening on http://127.0.0.1:PORT` once ready, runs until SIGTERM.
//
// Script: {"turns": [{"expect"?: "substring", "steps": [STEP, ...]}, ...]}, STEP one of
//   {"text": "...", "chunk"?: 3, "delay_ms"?: 15}
//   {"call": {"name": "...", "arguments": {...}}}
//   {"sleep_ms": N}
//   {"fail": "message"}
// Each response.create / POST takes the next turn; past the end the answer is "(end of script)".

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

import WebSocket, { WebSocketServer } from 'ws';

const END_OF_SCRIPT = '(end of script)';

function randomId(prefix) {
  return prefix + crypto.randomBytes(12).toString('hex');
}

function approxTokens(s) {
  return s ? Math.ceil(s.length / 4) : 0;
}

function loadScript(script) {
  if (script === undefined || script === null) return { turns: [] };
  const s = typeof script === 'string' ? JSON.parse(fs.readFileSync(script, 'utf8')) : script;
  if (!s || !Array.isArray(s.turns)) throw new Error('scripted server: the script must be {"turns": [...]}');
  return s;
}

// A turn's run state: `cancelled` is set by response.cancel, `closed` when the client went away.
// `wake` interrupts a pending sleep so a cancel takes effect at once.
class TurnControl {
  constructor() {
    this.cancelled = false;
    this.closed = false;
    this._wake = null;
  }
  get stopped() {
    return this.cancelled || this.closed;
  }
  cancel() {
    this.cancelled = true;
    this._fire();
  }
  close() {
    this.closed = true;
    this._fire();
  }
  _fire() {
    const w = this._wake;
    this._wake = null;
    if (w) w();
  }
  sleep(ms) {
    if (this.stopped) return Promise.resolve();
    if (!(ms > 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this._wake = null;
        resolve();
      }, ms);
      this._wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

// Runs one turn, calling emit(event) for every event. Returns the final response object.
// When the client went away (ctl.closed) it stops quietly and returns null.
async function runTurn(turn, body, emit, ctl) {
  const inputJson = JSON.stringify(body?.input ?? null) ?? '';
  let steps = Array.isArray(turn?.steps) ? turn.steps : [];
  if (turn && typeof turn.expect === 'string' && !inputJson.includes(turn.expect)) {
    const shown = inputJson.length > 400 ? inputJson.slice(-400) : inputJson;
    steps = [{ text: `SCRIPT MISMATCH: expected ${JSON.stringify(turn.expect)} in the request input, got ...${shown}`, chunk: 64, delay_ms: 0 }];
  }

  let seq = 0;
  const output = [];
  let outChars = 0;
  const r = {
    id: randomId('resp_'),
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    model: 'scripted',
    status: 'in_progress',
    output: [],
    usage: { input_tokens: approxTokens(inputJson), output_tokens: 0, total_tokens: approxTokens(inputJson) },
  };
  const snapshot = () => JSON.parse(JSON.stringify(r));
  const send = (type, fields) => {
    if (ctl.closed) return;
    emit({ type, ...fields, sequence_number: seq++ });
  };
  const finish = (type, status, extra = {}) => {
    r.status = status;
    Object.assign(r, extra);
    r.output = output;
    r.usage.output_tokens = Math.ceil(outChars / 4);
    r.usage.total_tokens = r.usage.input_tokens + r.usage.output_tokens;
    const final = snapshot();
    send(type, { response: final });
    return ctl.closed ? null : final;
  };

  send('response.created', { response: snapshot() });
  send('response.in_progress', { response: snapshot() });

  let msg = null; // the open message item: {id, index, text}
  const closeMessage = (status) => {
    if (!msg) return;
    const part = { type: 'output_text', text: msg.text, annotations: [] };
    const item = { id: msg.id, type: 'message', status, role: 'assistant', content: [part] };
    send('response.output_text.done', { item_id: msg.id, output_index: msg.index, content_index: 0, text: msg.text, logprobs: [] });
    send('response.content_part.done', { item_id: msg.id, output_index: msg.index, content_index: 0, part });
    send('response.output_item.done', { output_index: msg.index, item });
    output.push(item);
    msg = null;
  };
  const cancelled = () => {
    closeMessage('incomplete');
    return finish('response.incomplete', 'cancelled');
  };

  for (const step of steps) {
    if (ctl.closed) return null;
    if (ctl.cancelled) return cancelled();
    if (typeof step.text === 'string') {
      if (!msg) {
        msg = { id: randomId('msg_'), index: output.length, text: '' };
        send('response.output_item.added', {
          output_index: msg.index,
          item: { id: msg.id, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
        });
        send('response.content_part.added', {
          item_id: msg.id,
          output_index: msg.index,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [] },
        });
      }
      const chunk = Math.max(1, step.chunk ?? 3);
      const delay = step.delay_ms ?? 15;
      const chars = Array.from(step.text); // never split a surrogate pair
      for (let i = 0; i < chars.length; i += chunk) {
        if (ctl.closed) return null;
        if (ctl.cancelled) return cancelled();
        if (i > 0) await ctl.sleep(delay);
        if (ctl.closed) return null;
        if (ctl.cancelled) return cancelled();
        const delta = chars.slice(i, i + chunk).join('');
        msg.text += delta;
        outChars += delta.length;
        send('response.output_text.delta', { item_id: msg.id, output_index: msg.index, content_index: 0, delta, logprobs: [] });
      }
    } else if (step.call) {
      closeMessage('completed');
      const args = typeof step.call.arguments === 'string' ? step.call.arguments : JSON.stringify(step.call.arguments ?? {});
      const index = output.length;
      const item = { id: randomId('fc_'), type: 'function_call', status: 'in_progress', arguments: '', call_id: randomId('call_'), name: step.call.name };
      send('response.output_item.added', { output_index: index, item: { ...item } });
      send('response.function_call_arguments.delta', { item_id: item.id, output_index: index, delta: args });
      send('response.function_call_arguments.done', { item_id: item.id, output_index: index, name: item.name, arguments: args });
      item.status = 'completed';
      item.arguments = args;
      send('response.output_item.done', { output_index: index, item: { ...item } });
      output.push(item);
      outChars += args.length;
    } else if (step.sleep_ms !== undefined) {
      await ctl.sleep(step.sleep_ms);
    } else if (step.fail !== undefined) {
      return finish('response.failed', 'failed', { error: { code: 'server_error', message: String(step.fail) } });
    } else {
      return finish('response.failed', 'failed', { error: { code: 'server_error', message: `bad script step: ${JSON.stringify(step)}` } });
    }
  }
  if (ctl.closed) return null;
  if (ctl.cancelled) return cancelled();
  closeMessage('completed');
  return finish('response.completed', 'completed');
}

function errorBody(message, type = 'invalid_request_error') {
  return { error: { message, type } };
}

// pingEveryMs: ping every WebSocket that often and drop one that has not answered the previous
// ping, as `celer serve` (Beast's idle timeout) does.
export async function startScriptedServer({ script, logFile, apiKey, port = 0, pingEveryMs = 0 } = {}) {
  let sockets = 0;
  let dropped = 0;
  const { turns } = loadScript(script);
  let next = 0;
  const takeTurn = () => (next < turns.length ? turns[next++] : { steps: [{ text: END_OF_SCRIPT, chunk: 8, delay_ms: 0 }] });

  const logged = [];
  if (logFile) fs.writeFileSync(logFile, '');
  const log = (transport, body) => {
    const entry = { transport, body };
    logged.push(entry);
    if (logFile) {
      try {
        fs.appendFileSync(logFile, JSON.stringify(entry) + '\n');
      } catch {}
    }
  };

  const authorized = (req) => !apiKey || req.headers.authorization === `Bearer ${apiKey}`;
  const running = new Set(); // TurnControl of every turn in progress

  const sendJson = (res, status, obj) => {
    const data = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
    res.end(data);
  };

  const server = http.createServer((req, res) => {
    res.on('error', () => {});
    req.on('error', () => {});
    const path = (req.url || '/').split('?')[0];
    if (!authorized(req)) return sendJson(res, 401, errorBody('missing or wrong API key', 'authentication_error'));
    if (req.method === 'GET' && path === '/health') return sendJson(res, 200, { status: 'ok' });
    if (req.method === 'GET' && path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [{ id: 'scripted', object: 'model' }] });
    if (path !== '/v1/responses') return sendJson(res, 404, errorBody(`no route for ${req.method} ${path}`));
    if (req.method !== 'POST') return sendJson(res, 405, errorBody(`method ${req.method} not allowed`));
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('the body must be a JSON object');
      } catch (e) {
        return sendJson(res, 400, errorBody(`bad JSON body: ${e.message}`));
      }
      const stream = body.stream === true;
      log(stream ? 'sse' : 'http', body);
      const ctl = new TurnControl();
      running.add(ctl);
      res.on('close', () => {
        if (!res.writableFinished) ctl.close();
      });
      const turn = takeTurn();
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        const emit = (e) => {
          if (!res.destroyed && !res.writableEnded) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
        };
        runTurn(turn, body, emit, ctl)
          .catch(() => {})
          .finally(() => {
            running.delete(ctl);
            if (!res.destroyed && !res.writableEnded) res.end();
          });
      } else {
        runTurn(turn, body, () => {}, ctl)
          .then((final) => {
            if (final && !res.destroyed && !res.writableEnded) sendJson(res, 200, final);
          })
          .catch(() => {})
          .finally(() => running.delete(ctl));
      }
    });
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    const path = (req.url || '/').split('?')[0];
    const refuse = (status, text, obj) => {
      const data = JSON.stringify(obj);
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\nConnection: close\r\n\r\n${data}`,
      );
    };
    if (!authorized(req)) return refuse(401, 'Unauthorized', errorBody('missing or wrong API key', 'authentication_error'));
    if (path !== '/v1/responses') return refuse(404, 'Not Found', errorBody(`no WebSocket route at ${path}`));
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws));
  });

  function onSocket(ws) {
    ws.on('error', () => {});
    sockets++;
    if (pingEveryMs > 0) {
      let answered = true;
      ws.on('pong', () => (answered = true));
      const timer = setInterval(() => {
        if (!answered) {
          dropped++;
          ws.terminate();
          return;
        }
        answered = false;
        if (ws.readyState === WebSocket.OPEN) ws.ping();
      }, pingEveryMs);
      ws.on('close', () => clearInterval(timer));
    }
    const queue = [];
    let current = null; // TurnControl of the running turn
    let gone = false;
    const emit = (e) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(e));
    };
    const sendError = (message) => emit({ type: 'error', message, sequence_number: 0, error: { message, type: 'invalid_request_error' } });
    const pump = async () => {
      if (current) return;
      while (queue.length && !gone) {
        const body = queue.shift();
        const ctl = new TurnControl();
        current = ctl;
        running.add(ctl);
        try {
          await runTurn(takeTurn(), body, emit, ctl);
        } catch {
          // never let a turn's error escape
        } finally {
          running.delete(ctl);
          current = null;
        }
      }
    };
    ws.on('message', (data, isBinary) => {
      let msg;
      try {
        msg = JSON.parse(isBinary ? Buffer.from(data).toString('utf8') : data.toString());
      } catch (e) {
        return sendError(`bad JSON message: ${e.message}`);
      }
      if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return sendError('a WebSocket message must be a JSON object');
      log('ws', msg);
      if (msg.type === 'response.create') {
        queue.push(msg);
        pump();
      } else if (msg.type === 'response.cancel') {
        if (current) current.cancel();
        else sendError('no response is running on this connection');
      } else {
        sendError(`unsupported event type '${msg.type}'`);
      }
    });
    ws.on('close', () => {
      gone = true;
      queue.length = 0;
      if (current) current.close();
    });
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;

  let closing = null;
  const close = () => {
    if (closing) return closing;
    closing = new Promise((resolve) => {
      for (const ctl of running) ctl.close();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };

  return {
    url: `http://127.0.0.1:${actualPort}`,
    port: actualPort,
    close,
    requests: () => logged.map((e) => JSON.parse(JSON.stringify(e))),
    sockets: () => sockets,
    dropped: () => dropped,
  };
}

// ---- CLI -----------------------------------------------------------------------------------------

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unexpected argument: ${a}`);
    const value = m[2] !== undefined ? m[2] : argv[++i];
    if (value === undefined) throw new Error(`${a} needs a value`);
    out[m[1]] = value;
  }
  return out;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
    if (!args.script) throw new Error('--script FILE is required');
  } catch (e) {
    process.stderr.write(`scripted_server: ${e.message}\nusage: node scripted_server.mjs --script FILE --log FILE [--api-key K] [--port N]\n`);
    process.exit(2);
  }
  const srv = await startScriptedServer({
    script: args.script,
    logFile: args.log,
    apiKey: args['api-key'],
    port: args.port ? Number(args.port) : 0,
  });
  process.stdout.write(`listening on ${srv.url}\n`);
  const stop = () => {
    srv.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`scripted_server: ${e.stack || e.message}\n`);
    process.exit(1);
  });
}

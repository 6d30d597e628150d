// A local stand-in for the Hugging Face hub, enough of it for `celer pull`:
//   GET /api/models/OWNER/REPO/tree/REVISION[/FOLDER]  the folder's listing, with LFS sha256s
//   GET /OWNER/REPO/resolve/REVISION/PATH               302 to the "CDN", a second server on
//                                                       another port (so a token must not follow)
//   GET /cdn/OWNER/REPO/PATH                            the bytes, with Range support
// plus knobs for what goes wrong in real life, and counters to check what the client did.
//
//   const hub = await startFakeHub({ files: { 'owner/repo': { 'file.gguf': buffer } } });
//   ... HF_ENDPOINT=hub.url ...; hub.stats.cdn; await hub.close();
//
// A file is a Buffer, or { data, sha256 (advertised; a different one means the bytes are
// "wrong"), lfs (false: no sha256 in the listing) }. Options:
//   token       requests to the hub (not the CDN) need `Authorization: Bearer <token>`, else 401
//   dropAfter   { 'owner/repo/path': N }: the first CDN GET of that file sends N bytes and then
//               drops the connection
//   noRange     the CDN ignores Range and always sends the whole file (200)
//   chunkDelayMs  the CDN sends 64 KiB, waits this long, sends the next (slow downloads)
//   revisions   revisions that exist besides "main"

import crypto from 'node:crypto';
import http from 'node:http';

function normalise(f) {
  const data = Buffer.isBuffer(f) ? f : f.data;
  return {
    data,
    sha256: f.sha256 ?? crypto.createHash('sha256').update(data).digest('hex'),
    lfs: f.lfs ?? true,
  };
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

export async function startFakeHub({ files = {}, token = null, dropAfter = {}, noRange = false, chunkDelayMs = 0, revisions = [] } = {}) {
  const repos = new Map(Object.entries(files).map(([repo, fs]) => [repo, new Map(Object.entries(fs).map(([p, f]) => [p, normalise(f)]))]));
  const stats = { tree: 0, resolve: 0, cdn: 0, cdnBytes: 0, ranges: [], cdnAuth: [], treeUrls: [], other: 0 };
  const drops = { ...dropAfter };
  let cdnUrl = '';

  const fail = (res, status, code, message) => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code, 'x-error-message': message });
    res.end(JSON.stringify({ error: message }));
  };
  const authorised = (req) => !token || req.headers.authorization === `Bearer ${token}`;

  function tree(req, res, parts) {
    // parts: OWNER REPO 'tree' REVISION FOLDER...
    stats.tree++;
    stats.treeUrls.push(req.url);
    if (!authorised(req)) return fail(res, 401, 'RepoNotFound', 'Invalid credentials in Authorization header');
    const repo = repos.get(`${parts[0]}/${parts[1]}`);
    if (!repo) return fail(res, 404, 'RepoNotFound', 'Repository not found');
    const revision = decodeURIComponent(parts[3]);
    if (revision !== 'main' && !revisions.includes(revision)) return fail(res, 404, 'RevisionNotFound', 'Invalid rev id');
    const folder = parts.slice(4).map(decodeURIComponent).join('/');
    const entries = [];
    const dirs = new Set();
    for (const [p, f] of repo) {
      const inFolder = folder ? p.startsWith(`${folder}/`) : true;
      if (!inFolder) continue;
      const rest = folder ? p.slice(folder.length + 1) : p;
      if (rest.includes('/')) {
        dirs.add(`${folder ? `${folder}/` : ''}${rest.split('/')[0]}`);
        continue;
      }
      const entry = { type: 'file', oid: crypto.createHash('sha1').update(p).digest('hex'), size: f.data.length, path: p };
      if (f.lfs) entry.lfs = { oid: f.sha256, size: f.data.length, pointerSize: 134 };
      entries.push(entry);
    }
    for (const d of dirs) entries.push({ type: 'directory', oid: '0'.repeat(40), size: 0, path: d });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(entries));
  }

  function resolve(req, res, parts) {
    // parts: OWNER REPO 'resolve' REVISION PATH...
    stats.resolve++;
    if (!authorised(req)) return fail(res, 401, 'RepoNotFound', 'Invalid credentials in Authorization header');
    const key = parts.slice(4).map(decodeURIComponent).join('/');
    if (!repos.get(`${parts[0]}/${parts[1]}`)?.has(key)) return fail(res, 404, 'EntryNotFound', 'Entry not found');
    res.writeHead(302, { location: `${cdnUrl}/cdn/${parts[0]}/${parts[1]}/${parts.slice(4).join('/')}`, 'content-length': 0 });
    res.end();
  }

  function send(res, body, onDone) {
    let at = 0;
    const next = () => {
      if (at >= body.length) return onDone();
      const piece = body.subarray(at, at + 65536);
      at += piece.length;
      stats.cdnBytes += piece.length;
      res.write(piece, () => (chunkDelayMs ? setTimeout(next, chunkDelayMs) : next()));
    };
    next();
  }

  function cdn(req, res, parts) {
    // parts: 'cdn' OWNER REPO PATH...
    stats.cdn++;
    stats.cdnAuth.push(req.headers.authorization ?? null);
    const key = parts.slice(3).map(decodeURIComponent).join('/');
    const f = repos.get(`${parts[1]}/${parts[2]}`)?.get(key);
    if (!f) return fail(res, 404, 'EntryNotFound', 'no such object');
    const size = f.data.length;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    stats.ranges.push(req.headers.range ?? null);
    let start = 0;
    if (m && !noRange) {
      start = Number(m[1]);
      if (start >= size) {
        res.writeHead(416, { 'content-range': `bytes */${size}` });
        return res.end();
      }
      res.writeHead(206, { 'content-length': size - start, 'content-range': `bytes ${start}-${size - 1}/${size}`, 'accept-ranges': 'bytes' });
    } else {
      res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
    }
    const fullKey = `${parts[1]}/${parts[2]}/${key}`;
    if (drops[fullKey] !== undefined) {
      const n = drops[fullKey];
      delete drops[fullKey];
      return send(res, f.data.subarray(start, start + n), () => res.socket.destroy());
    }
    send(res, f.data.subarray(start), () => res.end());
  }

  const handler = (req, res) => {
    const url = new URL(req.url, 'http://x');
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method !== 'GET') {
      stats.other++;
      return fail(res, 405, 'MethodNotAllowed', req.method);
    }
    if (parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'tree') return tree(req, res, parts.slice(2));
    if (parts[2] === 'resolve') return resolve(req, res, parts);
    if (parts[0] === 'cdn') return cdn(req, res, parts);
    stats.other++;
    fail(res, 404, 'NotFound', req.url);
  };

  const hubServer = http.createServer(handler);
  const cdnServer = http.createServer(handler);
  const sockets = new Set();
  for (const s of [hubServer, cdnServer]) s.on('connection', (c) => (sockets.add(c), c.on('close', () => sockets.delete(c))));
  const hubPort = await listen(hubServer);
  cdnUrl = `http://127.0.0.1:${await listen(cdnServer)}`;
  return {
    url: `http://127.0.0.1:${hubPort}`,
    cdnUrl,
    stats,
    close: async () => {
      for (const c of sockets) c.destroy();
      await Promise.all([hubServer, cdnServer].map((s) => new Promise((r) => s.close(r))));
    },
  };
}

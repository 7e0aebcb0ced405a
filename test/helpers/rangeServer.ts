// A real HTTP file server for the weight-download tests (Node's http module on 127.0.0.1, a random port): serves a
// directory with HEAD and single byte-range GETs, as Hugging Face's CDN does, logs every request so tests can see
// which bytes were fetched, and injects the failures downloads must survive — a connection cut mid-file, a 500, a
// server that ignores Range, a repository that wants a token. No fetch mocks: the code under test does real HTTP.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { open, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

export interface LoggedRequest {
  method: string;
  /** URL path, decoded. */
  path: string;
  /** The requested byte range [start, end] (inclusive) or null for no Range header. */
  range: [number, number] | null;
  status: number;
  /** Body bytes actually written (less than asked when a cut was injected). */
  sent: number;
}

export interface RangeServer {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  url: string;
  log: LoggedRequest[];
  /**
   * The next response covering byte `offset` of `path` stops there and the connection is destroyed; `times` such
   * responses in a row (default once), e.g. more than the client's retries to make a download fail for good.
   */
  cutAt(path: string, offset: number, times?: number): void;
  /** The next `times` requests for `path` answer `status` (default 500). */
  failNext(path: string, status?: number, times?: number): void;
  /** GETs of paths starting with `prefix` ignore Range and send the whole file (200). */
  ignoreRange(prefix: string): void;
  /** Paths starting with `prefix` answer 401 unless `Authorization: Bearer <token>` is sent. */
  requireToken(prefix: string, token: string): void;
  /** Every request waits this long before its answer (to test abort in flight). */
  delayMs: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.txt': 'text/plain' };

function parseRange(header: string | undefined, size: number): [number, number] | 'bad' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'bad';
  if (m[1] === '') return [Math.max(0, size - Number(m[2])), size - 1]; // suffix: the last n bytes
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start <= end && start < size ? [start, end] : 'bad';
}

export async function startRangeServer(root: string): Promise<RangeServer> {
  const cuts = new Map<string, { offset: number; times: number }>();
  const failures = new Map<string, { status: number; times: number }>();
  const ignoring: string[] = [];
  const tokens: [string, string][] = [];
  const log: LoggedRequest[] = [];

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const entry: LoggedRequest = { method: req.method ?? 'GET', path, range: null, status: 0, sent: 0 };
    log.push(entry);
    // CORS, so a page served from another origin (the app under test) can read the files, their sizes and ranges.
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges, Content-Encoding');
    if (req.method === 'OPTIONS') {
      entry.status = 204;
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Allow-Headers': 'Range, Authorization', 'Access-Control-Max-Age': '600' }).end();
      return;
    }
    const answer = (status: number, body = '') => { entry.status = status; res.writeHead(status, { 'Content-Type': 'text/plain' }).end(body); };
    if (server.delayMs) await new Promise((r) => setTimeout(r, server.delayMs));
    const failure = failures.get(path);
    if (failure && failure.times > 0) {
      failure.times--;
      return answer(failure.status, 'injected failure');
    }
    const guard = tokens.find(([prefix]) => path.startsWith(prefix));
    if (guard && req.headers.authorization !== `Bearer ${guard[1]}`) return answer(401, 'Access to this repository is restricted.');
    const file = normalize(join(root, path));
    if (!file.startsWith(normalize(root + sep))) return answer(403);
    let size: number;
    try {
      const s = await stat(file);
      if (!s.isFile()) return answer(404, 'Entry not found');
      size = s.size;
    } catch {
      return answer(404, 'Entry not found');
    }
    const headers: Record<string, string | number> = { 'Accept-Ranges': 'bytes', 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' };
    if (req.method === 'HEAD') {
      entry.status = 200;
      res.writeHead(200, { ...headers, 'Content-Length': size }).end();
      return;
    }
    const parsed = ignoring.some((p) => path.startsWith(p)) ? null : parseRange(req.headers.range, size);
    if (req.headers.range && !ignoring.some((p) => path.startsWith(p))) entry.range = parsed === 'bad' ? null : parsed;
    if (parsed === 'bad') {
      entry.status = 416;
      res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
      return;
    }
    const [start, end] = parsed ?? [0, size - 1];
    entry.status = parsed ? 206 : 200;
    res.writeHead(entry.status, { ...headers, 'Content-Length': end - start + 1, ...(parsed ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}) });
    const cut = cuts.get(path);
    const stopAt = cut !== undefined && cut.offset >= start && cut.offset <= end ? cut.offset : end + 1;
    if (stopAt <= end && --cut!.times <= 0) cuts.delete(path);
    const fh = await open(file, 'r');
    try {
      const step = 256 * 1024;
      for (let at = start; at < stopAt && !res.destroyed; at += step) {
        const n = Math.min(step, stopAt - at);
        const buf = Buffer.alloc(n);
        await fh.read(buf, 0, n, at);
        // A client that hangs up (an aborted fetch) never drains: stop waiting when the response closes.
        if (!res.write(buf)) {
          await new Promise<void>((resolve) => {
            const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
            res.on('drain', done).on('close', done);
          });
        }
        entry.sent += n;
      }
    } finally {
      await fh.close();
    }
    if (res.destroyed) return;
    if (stopAt <= end) {
      // Flush what was written, then drop the connection without finishing the declared body.
      await new Promise<void>((r) => res.write('', () => r()));
      res.socket?.destroy();
      return;
    }
    res.end();
  }

  const server = Object.assign(createServer((req, res) => {
    handle(req, res).catch((e) => { if (!res.headersSent) res.writeHead(500).end(String(e)); else res.destroy(); });
  }), { delayMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const api: RangeServer = {
    url: `http://127.0.0.1:${port}`,
    log,
    cutAt: (path, offset, times = 1) => { cuts.set(path, { offset, times }); },
    failNext: (path, status = 500, times = 1) => { failures.set(path, { status, times }); },
    ignoreRange: (prefix) => { ignoring.push(prefix); },
    requireToken: (prefix, token) => { tokens.push([prefix, token]); },
    get delayMs() { return server.delayMs; },
    set delayMs(ms: number) { server.delayMs = ms; },
    close: () => new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((e) => (e ? reject(e) : resolve()));
    }),
  };
  return api;
}

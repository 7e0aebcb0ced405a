// Checkpoint files read over HTTP with Range requests, so the browser can convert a 25 GB Hugging Face shard
// tensor by tensor without ever holding (or storing) the original file. Works the same in Node 20+ (global fetch),
// which is how the tests drive it against a real local server. Transient failures (network errors, 5xx, 429) are
// retried with exponential backoff, and a transfer cut in the middle of a range is resumed from the byte where it
// stopped; what cannot be fixed by retrying becomes a typed error whose message says what to do.

import { HttpError, HttpFileNotFound, NetworkError } from '../errors/weights.ts';
import type { FolderSource } from './checkpoint.ts';
import type { ByteSource } from './safetensors.ts';

export interface HttpSourceOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Sent with every request, e.g. `{ Authorization: 'Bearer hf_…' }`. */
  headers?: Record<string, string>;
  /** Aborts requests in flight and waits between retries. */
  signal?: AbortSignal;
  /** Failed attempts in a row (without a byte of progress) before giving up; default 4. */
  retries?: number;
  /** First backoff delay in ms, doubled after each failure; default 500. */
  retryDelayMs?: number;
  /** Files up to this size are fetched whole once and served from memory (also covers compressed JSON); default 1 MiB. */
  wholeFileBytes?: number;
  /** Largest file accepted from a server that ignores Range (answers 200 with the whole file); default 64 MiB. */
  maxIgnoredRangeBytes?: number;
}

function statusError(url: string, status: number, attempts: number): HttpError {
  const host = new URL(url).host;
  if (status === 401 || status === 403) {
    return new HttpError(url, status, `${host} refused access to ${url} (HTTP ${status}): this repository needs a Hugging Face token, or its license must be accepted on its page while logged in (or the repository name is wrong). Add a token and try again.`);
  }
  if (status >= 500 || status === 429) {
    return new HttpError(url, status, `${host} failed with HTTP ${status} on ${attempts} attempts for ${url}; try again later, the download resumes where it stopped.`);
  }
  return new HttpError(url, status, `${host} answered HTTP ${status} for ${url}, which this app cannot use; check the address.`);
}

const retryable = (status: number) => status >= 500 || status === 429 || status === 408;

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(timer); reject(signal!.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Content-Range: bytes a-b/total → {start, end (inclusive), total (null for '*')}. */
function parseContentRange(value: string | null): { start: number; end: number; total: number | null } | null {
  const m = value && /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  return m ? { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) } : null;
}

/**
 * One file over HTTP. `read` returns exactly the bytes asked for, or throws HttpError / HttpFileNotFound /
 * NetworkError / the signal's AbortError. `file` is the name used in messages and in HttpFileNotFound.
 */
export function httpFileSource(url: string, options: HttpSourceOptions = {}, file = url): ByteSource {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const retries = options.retries ?? 4;
  const baseDelay = options.retryDelayMs ?? 500;
  const wholeFileBytes = options.wholeFileBytes ?? 1 << 20;
  const maxIgnored = options.maxIgnoredRangeBytes ?? 64 << 20;
  const signal = options.signal;
  let sizePromise: Promise<number> | null = null;
  let whole: Uint8Array | null = null; // the entire file, for small files and Range-ignoring servers

  /** Runs `attempt` until it succeeds; a failure that made byte progress does not count against the retries. */
  async function withRetries<T>(attempt: (progressed: () => void) => Promise<T>): Promise<T> {
    let failures = 0;
    for (;;) {
      signal?.throwIfAborted();
      let progressed = false;
      try {
        return await attempt(() => { progressed = true; });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        // fetch and body streams report network failures as TypeError, in browsers and in Node alike.
        if (!(e instanceof TransientStatus || e instanceof TypeError)) throw e;
        failures = progressed ? 1 : failures + 1;
        if (failures > retries) {
          if (e instanceof TransientStatus) throw statusError(url, e.status, failures);
          throw new NetworkError(url, describe(e), { cause: e });
        }
        await sleep(baseDelay * 2 ** (failures - 1), signal);
      }
    }
  }

  async function request(init: RequestInit): Promise<Response> {
    const res = await doFetch(url, { ...init, headers: { ...options.headers, ...(init.headers as Record<string, string>) }, signal });
    if (res.status === 404) { await res.body?.cancel(); throw new HttpFileNotFound(file, url); }
    if (retryable(res.status)) { await res.body?.cancel(); throw new TransientStatus(res.status); }
    if (!res.ok) { await res.body?.cancel(); throw statusError(url, res.status, 1); }
    return res;
  }

  async function fetchWhole(): Promise<Uint8Array> {
    whole ??= await withRetries(async () => new Uint8Array(await (await request({ method: 'GET' })).arrayBuffer()));
    return whole;
  }

  async function size(): Promise<number> {
    sizePromise ??= (async () => {
      let head: Response | null = null;
      try {
        head = await withRetries(() => request({ method: 'HEAD' }));
      } catch (e) {
        if (!(e instanceof HttpError && (e.status === 405 || e.status === 501))) throw e; // no HEAD: probe below
      }
      const length = head?.headers.get('content-length') ?? null;
      // Small files are fetched whole: one request, and right even when the server compresses them.
      if (length !== null && Number(length) <= wholeFileBytes) return (await fetchWhole()).length;
      if (length !== null && !head?.headers.get('content-encoding')) return Number(length);
      // No usable length (chunked or compressed): ask for one byte and read the total from Content-Range.
      return withRetries(async () => {
        const res = await request({ method: 'GET', headers: { Range: 'bytes=0-0' } });
        if (res.status === 206) {
          await res.body?.cancel();
          const total = parseContentRange(res.headers.get('content-range'))?.total;
          if (total == null) throw new HttpError(url, 206, `${url} gave no file size (no Content-Length or Content-Range total); the server cannot be used for downloads.`);
          return total;
        }
        whole = await readIgnoredRange(res);
        return whole.length;
      });
    })();
    sizePromise.catch(() => { sizePromise = null; }); // a failed probe may be retried by a later call
    return sizePromise;
  }

  /** A 200 answer to a Range request: accept it only for files small enough to hold. */
  async function readIgnoredRange(res: Response): Promise<Uint8Array> {
    const length = Number(res.headers.get('content-length') ?? NaN);
    if (length > maxIgnored) {
      await res.body?.cancel();
      throw new HttpError(url, 200, `${new URL(url).host} ignores Range requests, and ${url} is too large (${length} bytes) to fetch whole; serve the model from a server that supports Range (Hugging Face and any static file server do).`);
    }
    return new Uint8Array(await res.arrayBuffer());
  }

  async function read(offset: number, length: number): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0);
    const total = await size();
    if (offset < 0 || offset + length > total) throw new RangeError(`${url}: read of [${offset}, ${offset + length}) is outside the ${total}-byte file`);
    if (whole) return whole.slice(offset, offset + length);
    const out = new Uint8Array(length);
    let filled = 0;
    await withRetries(async (progressed) => {
      const already = filled;
      const from = offset + filled;
      const res = await request({ method: 'GET', headers: { Range: `bytes=${from}-${offset + length - 1}` } });
      if (res.status === 200) {
        whole = await readIgnoredRange(res);
        out.set(whole.subarray(offset + filled, offset + length), filled);
        filled = length;
        return;
      }
      const range = parseContentRange(res.headers.get('content-range'));
      if (res.status !== 206 || (range && range.start !== from)) {
        await res.body?.cancel();
        throw new HttpError(url, res.status, `${url} answered a request for bytes from ${from} with ${res.status} ${res.headers.get('content-range') ?? ''}; the server does not serve byte ranges correctly.`);
      }
      // Stream into place so that a cut transfer keeps what arrived and the retry asks only for the rest.
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const take = Math.min(value.length, length - filled);
        out.set(value.subarray(0, take), filled);
        filled += take;
        if (take > 0) progressed();
        if (filled === length) { await reader.cancel(); break; }
      }
      if (filled < length) throw new TypeError(`connection closed after ${filled - already} of ${length - already} bytes`);
    });
    return out;
  }

  return { name: url, size, read };
}

/** An HTTP status worth retrying (5xx, 429, 408); becomes an HttpError once retries run out. */
class TransientStatus extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause instanceof Error ? `: ${e.cause.message}` : '';
  return `${e.message}${cause}`;
}

/**
 * A checkpoint folder at `baseUrl` (e.g. `https://huggingface.co/org/repo/resolve/main/text_encoder/`). Opening a
 * file checks that it exists (HEAD), so a missing file throws HttpFileNotFound (a CheckpointFileMissing) at once.
 */
export function httpFolderSource(baseUrl: string, options: HttpSourceOptions = {}): FolderSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return async (file) => {
    const url = new URL(file.split('/').map(encodeURIComponent).join('/'), base).href;
    const src = httpFileSource(url, options, file);
    await src.size();
    return src;
  };
}

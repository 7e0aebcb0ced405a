// Byte-level BPE machinery shared by the two prompt tokenizers (Llama-3 and CLIP-L). Both reference tokenizers
// map UTF-8 bytes to printable characters with GPT-2's table, cut text into pieces with a regex, and merge each
// piece's characters by merge rank; only the cutting rules and the end-of-word marker differ. Keeping the shared
// part here means one byte table, one merge loop and one regex translation (the reference patterns are written for
// Oniguruma / Python `regex`, which JavaScript's RegExp does not read verbatim) serve both.

import { TokenizerFormatError } from '../errors/pipeline.ts';

/**
 * GPT-2's `bytes_to_unicode`: the printable Latin-1 bytes map to themselves, the other 68 bytes (controls, space,
 * NBSP, soft hyphen) to U+0100 upwards in byte order, so every byte has a visible, non-whitespace stand-in.
 */
function buildByteToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + next++);
  return table;
}

export const BYTE_TO_UNICODE: readonly string[] = buildByteToUnicode();

const utf8 = new TextEncoder();

/** The text's UTF-8 bytes written with the GPT-2 byte table (what both tokenizers' vocabularies are keyed by). */
export function byteLevelEncode(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_TO_UNICODE[b];
  return out;
}

/**
 * Unicode White_Space, which is what `\s` means to Oniguruma (HF tokenizers) and to Python's `regex`. JavaScript's
 * `\s` differs: it adds U+FEFF and drops U+0085, so the reference patterns use this class instead.
 */
export const UNICODE_WHITESPACE_CLASS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/**
 * Rewrites a pre-tokenizer pattern from the reference's regex dialect into a JavaScript `u`-flag pattern: `\s`/`\S`
 * become explicit White_Space classes, and `(?i:...)` groups of plain letters (Llama-3's contractions) become
 * per-letter case classes, since Node 20 has no inline modifiers. Anything else is passed through as written.
 * Throws TokenizerFormatError for a construct it cannot translate faithfully.
 */
export function translateReferenceRegex(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const e = pattern[i + 1];
      i++;
      if (e === 's') out += inClass ? UNICODE_WHITESPACE_CLASS : `[${UNICODE_WHITESPACE_CLASS}]`;
      else if (e === 'S') {
        if (inClass) throw new TokenizerFormatError(`Pre-tokenizer pattern uses \\S inside a character class, which is not supported: ${pattern}`);
        out += `[^${UNICODE_WHITESPACE_CLASS}]`;
      } else out += c + e;
    } else if (inClass) {
      if (c === ']') inClass = false;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
      // A literal ']' right after '[' or '[^' belongs to the class.
      if (pattern[i + 1] === '^') out += pattern[++i];
      if (pattern[i + 1] === ']') out += `\\${pattern[++i]}`;
    } else if (pattern.startsWith('(?i:', i)) {
      const close = pattern.indexOf(')', i);
      const body = pattern.slice(i + 4, close);
      if (close < 0 || /[\\[\](){}?*+.^$]/.test(body)) {
        throw new TokenizerFormatError(`Pre-tokenizer pattern has a case-insensitive group that is not plain text: ${pattern}`);
      }
      out += `(?:${caseInsensitiveLiteral(body)})`;
      i = close;
    } else out += c;
  }
  return out;
}

/** `'re|'ve` → `'[rR][eE]|'[vV][eE]`: letters that have two cases become two-letter classes. */
function caseInsensitiveLiteral(body: string): string {
  let out = '';
  for (const ch of body) {
    const lo = ch.toLowerCase();
    const up = ch.toUpperCase();
    out += lo !== up && lo.length === 1 && up.length === 1 ? `[${lo}${up}]` : ch;
  }
  return out;
}

/** A merge table: pair key `left + ' ' + right` → rank (lower merges first). Byte-level symbols never hold a space. */
export type MergeRanks = Map<string, number>;

/**
 * Builds the rank table from merges in either serialisation of tokenizer.json (`"a b"` strings, or `["a", "b"]`
 * pairs) or the lines of a merges.txt. A later duplicate keeps the later rank, as a Python dict built from the list would.
 */
export function buildMergeRanks(merges: readonly (string | readonly [string, string])[]): MergeRanks {
  const ranks: MergeRanks = new Map();
  for (let rank = 0; rank < merges.length; rank++) {
    const m = merges[rank];
    if (typeof m === 'string') {
      const space = m.indexOf(' ');
      if (space <= 0 || space === m.length - 1 || m.indexOf(' ', space + 1) >= 0) {
        throw new TokenizerFormatError(`Merge #${rank} "${m}" is not two symbols separated by one space.`);
      }
      ranks.set(m, rank);
    } else {
      if (!Array.isArray(m) || m.length !== 2) throw new TokenizerFormatError(`Merge #${rank} is not a pair of symbols.`);
      ranks.set(`${m[0]} ${m[1]}`, rank);
    }
  }
  return ranks;
}

/**
 * Merges adjacent symbols by rank until no adjacent pair has a merge, the way Hugging Face tokenizers' `Word::merge_all`
 * does: a min-heap of candidate pairs ordered by (rank, position), stale entries skipped when popped. For merge tables
 * learned by BPE (every merge ranks after the merges that built its two sides) this gives the same result as the
 * Python loop in CLIP's and GPT-2's tokenizers (merge every occurrence of the best pair, repeat); it is O(n log n)
 * instead of O(n²) for long pieces.
 */
export function applyMerges(symbols: readonly string[], ranks: MergeRanks): string[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const text = symbols.slice();
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new PairHeap();
  const offer = (pos: number) => {
    const right = next[pos];
    if (right < 0) return;
    const rank = ranks.get(`${text[pos]} ${text[right]}`);
    if (rank !== undefined) heap.push(rank, pos, text[pos], text[right]);
  };
  for (let i = 0; i + 1 < n; i++) offer(i);

  while (heap.size > 0) {
    const top = heap.pop();
    const pos = top.pos;
    const right = next[pos];
    // Stale: the left symbol was absorbed, or either side has changed since this pair was offered.
    if (!alive[pos] || right < 0 || text[pos] !== top.left || text[right] !== top.right) continue;
    text[pos] = top.left + top.right;
    alive[right] = 0;
    next[pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = pos;
    if (prev[pos] >= 0) offer(prev[pos]);
    offer(pos);
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(text[i]);
  return out;
}

interface PairEntry {
  rank: number;
  pos: number;
  left: string;
  right: string;
}

/** Binary min-heap on (rank, pos): the lowest rank merges first, and among equal ranks the leftmost. */
class PairHeap {
  private items: PairEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  push(rank: number, pos: number, left: string, right: string): void {
    const items = this.items;
    items.push({ rank, pos, left, right });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): PairEntry {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && before(items[l], items[m])) m = l;
        if (r < items.length && before(items[r], items[m])) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m], items[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(a: PairEntry, b: PairEntry): boolean {
  return a.rank < b.rank || (a.rank === b.rank && a.pos < b.pos);
}

/** A bounded memo of piece → tokens: prompts repeat words, and a piece's tokens never depend on its neighbours. */
export class PieceCache<T> {
  private readonly map = new Map<string, T>();

  constructor(private readonly capacity = 10_000) {}

  get(piece: string): T | undefined {
    return this.map.get(piece);
  }

  set(piece: string, ids: T): void {
    // Dropping everything at capacity keeps memory bounded without bookkeeping; refilling is cheap.
    if (this.map.size >= this.capacity) this.map.clear();
    this.map.set(piece, ids);
  }
}

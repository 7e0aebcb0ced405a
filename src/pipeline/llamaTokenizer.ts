// The Llama-3 tokenizer, read from a Hugging Face tokenizer.json, so prompts become the exact ids the reference's
// LlamaTokenizerFast (Rust `tokenizers`) produces: added tokens such as <|eot_id|> are cut out verbatim first, the
// rest is split by the file's pre-tokenizer regex, written as GPT-2 byte characters and merged by BPE rank (or
// taken whole when the file sets `ignore_merges` and the piece is a vocabulary entry, as tiktoken does). Pure code:
// the caller fetches and parses the file.

import { TokenizerFormatError } from '../errors/pipeline.ts';
import { applyMerges, buildMergeRanks, byteLevelEncode, PieceCache, translateReferenceRegex, type MergeRanks } from './bpeTokenizer.ts';

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The parts of a Hugging Face tokenizer.json this tokenizer reads. */
export interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  model: {
    type?: string;
    vocab: Record<string, number>;
    merges: (string | [string, string])[];
    ignore_merges?: boolean;
    byte_fallback?: boolean;
    unk_token?: string | null;
  };
}

export interface LlamaEncodeOptions {
  /** Prepend the BOS id, as LlamaTokenizerFast does by default (add_bos_token). */
  addBos?: boolean;
}

export interface LlamaTokenizerOptions {
  /** The BOS token's text; Llama-3's tokenizer_config names <|begin_of_text|>. */
  bosToken?: string;
}

interface AddedToken {
  id: number;
  content: string;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
}

export class LlamaTokenizer {
  private readonly cache = new PieceCache<readonly number[]>();
  private readonly addedByContent: Map<string, AddedToken>;
  private readonly addedPattern: RegExp | null;

  private constructor(
    private readonly vocab: Map<string, number>,
    private readonly ranks: MergeRanks,
    private readonly ignoreMerges: boolean,
    private readonly splitPattern: RegExp,
    addedTokens: AddedToken[],
    readonly bosId: number,
  ) {
    this.addedByContent = new Map(addedTokens.map((t) => [t.content, t]));
    // Longest first, so the alternation picks the longest token at the leftmost place (HF's leftmost-longest match).
    const contents = addedTokens.map((t) => t.content).filter((c) => c.length > 0).sort((a, b) => b.length - a.length);
    this.addedPattern = contents.length > 0 ? new RegExp(contents.map(escapeRegex).join('|'), 'gu') : null;
  }

  /**
   * Reads a parsed tokenizer.json (BPE model, Split-regex + ByteLevel pre-tokenizer, no normalizer — the Llama-3
   * layout). Throws TokenizerFormatError naming what differs when the file has another layout or the BOS token is missing.
   */
  static fromTokenizerJson(json: unknown, options: LlamaTokenizerOptions = {}): LlamaTokenizer {
    const file = json as TokenizerJson;
    const model = file?.model;
    if (!model || typeof model.vocab !== 'object' || !Array.isArray(model.merges)) {
      throw new TokenizerFormatError('tokenizer.json has no BPE model with vocab and merges; is this a Llama-3 tokenizer.json?');
    }
    if (model.type !== undefined && model.type !== 'BPE') {
      throw new TokenizerFormatError(`tokenizer.json model type is ${model.type}; the Llama-3 tokenizer is BPE.`);
    }
    if (file.normalizer != null) {
      throw new TokenizerFormatError('tokenizer.json has a normalizer; the Llama-3 tokenizer has none and this code applies none.');
    }
    const splitPattern = new RegExp(translateReferenceRegex(readSplitPattern(file.pre_tokenizer)), 'gu');
    const vocab = new Map<string, number>(Object.entries(model.vocab));
    const ranks = buildMergeRanks(model.merges);
    const added: AddedToken[] = (file.added_tokens ?? []).map((t) => ({
      id: t.id,
      content: t.content,
      singleWord: t.single_word === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
    }));
    const bosToken = options.bosToken ?? '<|begin_of_text|>';
    const bosId = added.find((t) => t.content === bosToken)?.id ?? vocab.get(bosToken);
    if (bosId === undefined) throw new TokenizerFormatError(`tokenizer.json has no token ${bosToken} to use as BOS.`);
    return new LlamaTokenizer(vocab, ranks, model.ignore_merges === true, splitPattern, added, bosId);
  }

  /** The id of a vocabulary or added token, or undefined. */
  tokenId(token: string): number | undefined {
    return this.addedByContent.get(token)?.id ?? this.vocab.get(token);
  }

  /** Token ids of `text`; added tokens written in the text (e.g. "<|eot_id|>") are recognised, as in the reference. */
  encode(text: string, options: LlamaEncodeOptions = {}): number[] {
    const ids: number[] = options.addBos ? [this.bosId] : [];
    for (const part of this.splitOnAddedTokens(text)) {
      if (typeof part === 'number') ids.push(part);
      else this.encodeOrdinary(part, ids);
    }
    return ids;
  }

  /** Cuts the text around added tokens: strings are ordinary text, numbers are added-token ids. */
  private splitOnAddedTokens(text: string): (string | number)[] {
    const pattern = this.addedPattern;
    if (!pattern) return text ? [text] : [];
    const parts: (string | number)[] = [];
    let start = 0;
    pattern.lastIndex = 0;
    for (let m = pattern.exec(text); m; m = pattern.exec(text)) {
      const token = this.addedByContent.get(m[0])!;
      let from = m.index;
      let to = from + m[0].length;
      if (token.singleWord && (isWordChar(text, from - 1) || isWordChar(text, to))) {
        pattern.lastIndex = from + 1;
        continue;
      }
      // lstrip/rstrip: the token swallows the whitespace beside it.
      if (token.lstrip) while (from > start && /\s/u.test(text[from - 1])) from--;
      if (token.rstrip) while (to < text.length && /\s/u.test(text[to])) to++;
      if (from > start) parts.push(text.slice(start, from));
      parts.push(token.id);
      start = to;
      pattern.lastIndex = to;
    }
    if (start < text.length) parts.push(text.slice(start));
    return parts;
  }

  /** Pre-tokenizes with the Split regex ("Isolated": matches and the gaps between them are pieces) and BPE-encodes each. */
  private encodeOrdinary(text: string, ids: number[]): void {
    const pattern = this.splitPattern;
    pattern.lastIndex = 0;
    let start = 0;
    for (let m = pattern.exec(text); m; m = pattern.exec(text)) {
      if (m[0].length === 0) {
        pattern.lastIndex++;
        continue;
      }
      if (m.index > start) this.encodePiece(text.slice(start, m.index), ids);
      this.encodePiece(m[0], ids);
      start = m.index + m[0].length;
    }
    if (start < text.length) this.encodePiece(text.slice(start), ids);
  }

  private encodePiece(piece: string, ids: number[]): void {
    const cached = this.cache.get(piece);
    if (cached) {
      for (const id of cached) ids.push(id);
      return;
    }
    const chars = byteLevelEncode(piece);
    const whole = this.ignoreMerges ? this.vocab.get(chars) : undefined;
    const pieceIds = whole !== undefined ? [whole] : applyMerges(chars.split(''), this.ranks).map((s) => this.symbolId(s));
    this.cache.set(piece, pieceIds);
    for (const id of pieceIds) ids.push(id);
  }

  private symbolId(symbol: string): number {
    const id = this.vocab.get(symbol);
    if (id === undefined) {
      throw new TokenizerFormatError(`BPE produced "${symbol}", which is not in the vocabulary; the merges and vocab do not belong together.`);
    }
    return id;
  }
}

/** The regex of the Split pre-tokenizer in the Llama-3 layout: Sequence[Split(Regex, Isolated), ByteLevel(no prefix space)]. */
function readSplitPattern(preTokenizer: unknown): string {
  const steps = (preTokenizer as { type?: string; pretokenizers?: unknown[] } | null)?.pretokenizers;
  const describe = JSON.stringify(preTokenizer)?.slice(0, 200);
  if (!Array.isArray(steps) || steps.length !== 2) {
    throw new TokenizerFormatError(`Unsupported pre_tokenizer (want Sequence[Split, ByteLevel]): ${describe}`);
  }
  const [split, byteLevel] = steps as {
    type?: string;
    pattern?: { Regex?: string };
    behavior?: string;
    invert?: boolean;
    add_prefix_space?: boolean;
    use_regex?: boolean;
  }[];
  const regex = split?.pattern?.Regex;
  if (split?.type !== 'Split' || typeof regex !== 'string' || split.behavior !== 'Isolated' || split.invert) {
    throw new TokenizerFormatError(`Unsupported pre_tokenizer split step (want Split with a Regex, Isolated): ${describe}`);
  }
  if (byteLevel?.type !== 'ByteLevel' || byteLevel.add_prefix_space || byteLevel.use_regex) {
    throw new TokenizerFormatError(`Unsupported pre_tokenizer byte step (want ByteLevel without prefix space or regex): ${describe}`);
  }
  return regex;
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/** Rust's char::is_alphanumeric or '_', which HF's single_word check treats as part of a word. */
function isWordChar(text: string, index: number): boolean {
  if (index < 0 || index >= text.length) return false;
  return /[\p{L}\p{N}_]/u.test(text[index]);
}

// The CLIP-L tokenizer (HunyuanVideo's tokenizer_2: vocab.json + merges.txt), so the prompt's pooled CLIP
// embedding gets the ids the reference's slow CLIPTokenizer produces. FramePack's environment has no ftfy, so the
// reference cleans text with BERT's BasicTokenizer (control characters dropped, whitespace collapsed, a space around
// every CJK ideograph, NFC, lower case; no accent stripping, no punctuation split) before CLIP's regex, GPT-2 byte
// characters and BPE with a `</w>` end-of-word marker. Output is always 77 ids: BOS, at most 75 tokens, EOS, then
// EOS as padding; the text model pools at the first EOS.

import { TokenizerFormatError } from '../errors/pipeline.ts';
import { applyMerges, buildMergeRanks, byteLevelEncode, PieceCache, UNICODE_WHITESPACE_CLASS, type MergeRanks } from './bpeTokenizer.ts';

export const CLIP_BOS_TOKEN = '<|startoftext|>';
export const CLIP_EOS_TOKEN = '<|endoftext|>';
/** CLIP's context length (model_max_length of the tokenizer, max_position_embeddings of the text model). */
export const CLIP_MAX_LENGTH = 77;
/** CLIPTokenizer reads only the first 49152 − 256 − 2 merges (the vocabulary's size minus bytes and specials). */
const CLIP_MERGE_LIMIT = 49152 - 256 - 2;

/** CLIPTokenizer's pattern (compiled with IGNORECASE); `\s` is Unicode White_Space as in Python's `regex`. */
const CLIP_PATTERN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${UNICODE_WHITESPACE_CLASS}\\p{L}\\p{N}]+`,
  'giu',
);
const SPECIAL_PATTERN = /<\|startoftext\|>|<\|endoftext\|>/g;
/** Two symbols separated by exactly one space, the form every line of CLIP's merges.txt has. */
const SIMPLE_MERGE_LINE = /^\S+ \S+$/;

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  /** CLIPTokenizer pads with <|endoftext|>, the same id as EOS. */
  readonly padId: number;
  /** Unknown pieces become <|endoftext|> too (CLIPTokenizer's unk_token). */
  readonly unkId: number;
  private readonly cachedTokens = new PieceCache<readonly string[]>();

  private constructor(
    private readonly vocab: Map<string, number>,
    private readonly ranks: MergeRanks,
  ) {
    this.bosId = requireId(vocab, CLIP_BOS_TOKEN);
    this.eosId = requireId(vocab, CLIP_EOS_TOKEN);
    this.padId = this.eosId;
    this.unkId = this.eosId;
  }

  /**
   * Reads tokenizer_2's vocab.json (text or parsed) and merges.txt (the first line is a "#version" header, skipped as
   * CLIPTokenizer skips it). Throws TokenizerFormatError when the vocabulary lacks the start/end tokens or a merge line is malformed.
   */
  static fromFiles(vocabJson: string | Record<string, number>, mergesTxt: string): ClipTokenizer {
    const parsed = typeof vocabJson === 'string' ? (JSON.parse(vocabJson) as Record<string, number>) : vocabJson;
    if (!parsed || typeof parsed !== 'object') throw new TokenizerFormatError('CLIP vocab.json is not a token → id object.');
    const lines = mergesTxt.trim().split('\n').slice(1, 1 + CLIP_MERGE_LIMIT);
    const merges = lines.map((line): string | readonly [string, string] => {
      const trimmed = line.trim();
      if (SIMPLE_MERGE_LINE.test(trimmed)) return trimmed; // already the "a b" key: no split needed
      const parts = trimmed.split(/\s+/);
      if (parts.length !== 2) throw new TokenizerFormatError(`CLIP merges.txt line "${line}" is not two symbols.`);
      return [parts[0], parts[1]];
    });
    return new ClipTokenizer(new Map(Object.entries(parsed)), buildMergeRanks(merges));
  }

  /** The BPE tokens of the text, without BOS/EOS (CLIPTokenizer.tokenize); special-token text stays one token. */
  tokenize(text: string): string[] {
    const tokens: string[] = [];
    for (const part of splitOnSpecialTokens(text)) {
      if (part === CLIP_BOS_TOKEN || part === CLIP_EOS_TOKEN) tokens.push(part);
      else for (const word of cleanText(part).match(CLIP_PATTERN) ?? []) tokens.push(...this.bpe(word));
    }
    return tokens;
  }

  /**
   * 77 ids as the reference builds them with padding="max_length", truncation=True: BOS, the first 75 token ids,
   * EOS, then padding with the EOS id.
   */
  encode(text: string, maxLength = CLIP_MAX_LENGTH): number[] {
    const body = this.tokenize(text).map((t) => this.vocab.get(t) ?? this.unkId);
    const ids = [this.bosId, ...body.slice(0, Math.max(0, maxLength - 2)), this.eosId];
    while (ids.length < maxLength) ids.push(this.padId);
    return ids;
  }

  /** Where CLIPTextModel pools: the first EOS in the ids (−1 if there is none). */
  firstEosIndex(ids: readonly number[]): number {
    return firstEosIndex(ids, this.eosId);
  }

  /** A regex piece as BPE tokens: its byte characters, the last one marked `</w>`, merged by rank. */
  private bpe(word: string): readonly string[] {
    if (word === CLIP_BOS_TOKEN || word === CLIP_EOS_TOKEN) return [word];
    const cached = this.cachedTokens.get(word);
    if (cached) return cached;
    const chars = byteLevelEncode(word).split('');
    chars[chars.length - 1] += '</w>';
    const tokens = applyMerges(chars, this.ranks);
    this.cachedTokens.set(word, tokens);
    return tokens;
  }
}

/** Index of the first `eosId` in `ids`, or −1: the position whose final hidden state is CLIP's pooled output. */
export function firstEosIndex(ids: readonly number[], eosId: number): number {
  return ids.indexOf(eosId);
}

function requireId(vocab: Map<string, number>, token: string): number {
  const id = vocab.get(token);
  if (id === undefined) throw new TokenizerFormatError(`CLIP vocab.json has no ${token}; is this tokenizer_2's vocab.json?`);
  return id;
}

/** PreTrainedTokenizer.tokenize's first step: the start/end tokens written in the text are taken verbatim. */
function splitOnSpecialTokens(text: string): string[] {
  const parts: string[] = [];
  let start = 0;
  for (const m of text.matchAll(SPECIAL_PATTERN)) {
    if (m.index > start) parts.push(text.slice(start, m.index));
    parts.push(m[0]);
    start = m.index + m[0].length;
  }
  if (start < text.length) parts.push(text.slice(start));
  return parts;
}

const CONTROL = /\p{C}/u;
const SPACE_SEPARATOR = /\p{Zs}/u;

/**
 * BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize joined by spaces: drop NUL, U+FFFD and
 * control/format/unassigned characters (tab, CR, LF become spaces), put spaces around CJK ideographs, NFC, split on
 * whitespace, lower-case each word.
 */
function cleanText(text: string): string {
  let spaced = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || SPACE_SEPARATOR.test(ch)) spaced += ' ';
    else if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) continue;
    else if (isCjkIdeograph(cp)) spaced += ` ${ch} `;
    else spaced += ch;
  }
  // Python's str.split() also breaks at U+2028/U+2029, the only whitespace left after the pass above.
  const words = spaced.normalize('NFC').split(new RegExp(`[${UNICODE_WHITESPACE_CLASS}]+`, 'u')).filter((w) => w.length > 0);
  return words.map((w) => w.toLowerCase()).join(' ');
}

/** BERT's _is_chinese_char: the CJK Unified Ideographs blocks and their extensions/compatibility blocks. */
function isCjkIdeograph(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

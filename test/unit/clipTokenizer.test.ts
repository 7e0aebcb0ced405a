import { TokenizerFormatError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ClipTokenizer, firstEosIndex } from '../../src/pipeline/clipTokenizer.ts';
import { BYTE_TO_UNICODE } from '../../src/pipeline/bpeTokenizer.ts';

// A hand-written vocabulary (ids 0..38, specials at CLIP's 49406/49407) and 13 merges, ranked in file order:
//   0 t h · 1 th e</w> · 2 c a · 3 ca t</w> · 4 ' s</w> · 5 d o · 6 u m · 7 p s</w> · 8 j um · 9 m p
//   10 ç Į · 11 çĮ «</w> · 12 ! !</w>
// Every expected id below was worked out by hand from these rules and the vocabulary listing in vocab.json.
const dir = resolve(import.meta.dirname, '..', 'fixtures', 'clip-bpe');
const clip = ClipTokenizer.fromFiles(readFileSync(join(dir, 'vocab.json'), 'utf8'), readFileSync(join(dir, 'merges.txt'), 'utf8'));

const BOS = 49406;
const EOS = 49407;
/** BOS + ids + EOS, padded with EOS to 77. */
const padded = (...ids: number[]) => [BOS, ...ids, EOS, ...new Array(77 - ids.length - 2).fill(EOS)];

describe('CLIP tokenizer (hand-made BPE)', () => {
  it('reads BOS, EOS and pad from the vocabulary', () => {
    expect([clip.bosId, clip.eosId, clip.padId, clip.unkId]).toEqual([49406, 49407, 49407, 49407]);
  });

  it('lower-cases, splits contractions and punctuation, and merges by rank', () => {
    // "the cat's dog, jumps!!" → pieces the | cat | 's | dog | , | jumps | !!
    //   the:   t h e</w> → th e</w> (0) → the</w> (1) = 4
    //   cat:   c a t</w> → ca t</w> (2) → cat</w> (3) = 9
    //   's:    ' s</w> → 's</w> (4) = 12
    //   dog:   d o g</w> → do g</w> (5), no "do g</w>" merge = 16, 15
    //   ,:     ,</w> = 17
    //   jumps: j u m p s</w>: best pair u m (6) → j um p s</w>; p s</w> (7) → j um ps</w>; j um (8) → jum ps</w>
    //          ("m p" (9) ranks after "u m" and never gets its chance) = 24, 23
    //   !!:    ! !</w> → !!</w> (12) = 38
    const ids = clip.encode('The CAT\'s  dog, jumps!!');
    expect(ids).toEqual(padded(4, 9, 12, 16, 15, 17, 24, 23, 38));
    expect(ids.length).toBe(77);
    expect(clip.firstEosIndex(ids)).toBe(10);
    expect(clip.tokenize('The CAT\'s')).toEqual(['the</w>', 'cat</w>', "'s</w>"]);
  });

  it('falls back to byte characters for a character outside the merges, after NFC and lower-casing', () => {
    // "CAFE" + U+0301 (combining acute) → NFC "CAFÉ" → "café"; é is UTF-8 C3 A9 → byte chars Ã ©:
    //   c a f Ã ©</w> → ca f Ã ©</w> (2) = 8, 27, 28, 29
    // digits are single pieces: 4</w> = 30, 2</w> = 31
    // 猫 (U+732B) is UTF-8 E7 8C AB → ç Į «</w> (0x8C is the 47th non-printable byte → U+0100 + 46 = Į);
    //   ç Į (10) → çĮ «</w> (11) → çĮ«</w> = 36. CJK ideographs get spaces around them, so 猫猫 is two pieces.
    expect(BYTE_TO_UNICODE[0x8c]).toBe('\u012e');
    expect(clip.encode('CAFE\u0301 42 猫猫')).toEqual(padded(8, 27, 28, 29, 30, 31, 36, 36));
  });

  it('maps a piece missing from the vocabulary to <|endoftext|> (CLIP\'s unk token)', () => {
    // "z": z</w> is not in the vocabulary → unk = 49407; the reference then pools at that position too.
    const ids = clip.encode('z the');
    expect(ids).toEqual(padded(EOS, 4));
    expect(clip.firstEosIndex(ids)).toBe(1);
  });

  it('cleans whitespace and drops control and format characters', () => {
    // tab, NBSP (Zs), LF → spaces; NUL and the zero-width joiner (Cf) vanish: "the cat" and "cat".
    expect(clip.encode('\tthe\u00a0c\u200dat\u0000\n')).toEqual(padded(4, 9));
    expect(clip.encode('')).toEqual(padded());
    expect(clip.firstEosIndex(clip.encode(''))).toBe(1);
  });

  it('takes <|startoftext|> and <|endoftext|> in the text as those tokens', () => {
    // Exact text is split off first; the upper-case form is lower-cased and caught by the regex's first alternatives.
    const ids = clip.encode('the<|endoftext|>cat <|STARTOFTEXT|>');
    expect(ids).toEqual(padded(4, EOS, 9, BOS));
    expect(clip.firstEosIndex(ids)).toBe(2);
  });

  it('truncates to 75 tokens between BOS and EOS, so EOS sits at index 76', () => {
    const exact = clip.encode('the '.repeat(75));
    expect(exact).toEqual([BOS, ...new Array(75).fill(4), EOS]);
    const long = clip.encode('the cat '.repeat(60));
    expect(long.length).toBe(77);
    expect(long.slice(1, 76)).toEqual(Array.from({ length: 75 }, (_, i) => (i % 2 === 0 ? 4 : 9)));
    expect(long[76]).toBe(EOS);
    expect(clip.firstEosIndex(long)).toBe(76);
  });

  it('finds the first EOS for pooling', () => {
    expect(firstEosIndex([BOS, 4, EOS, EOS], EOS)).toBe(2);
    expect(firstEosIndex([BOS, 4], EOS)).toBe(-1);
  });

  it('skips the merges.txt header and rejects a vocabulary without the special tokens', () => {
    // A file without its "#version" line loses its first merge ("t h") as the reference would: "the" stays t h e</w>.
    const noHeader = ClipTokenizer.fromFiles(readFileSync(join(dir, 'vocab.json'), 'utf8'), 't h\nth e</w>\n');
    expect(noHeader.encode('the')).toEqual(padded(0, 1, 2));
    expect(() => ClipTokenizer.fromFiles({ a: 0 }, '#version: 0.2\n')).toThrow(TokenizerFormatError);
  });
});

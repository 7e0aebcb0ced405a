// FramePack's Llama prompt: the user prompt is wrapped in HunyuanVideo's fixed chat template (diffusers'
// DEFAULT_PROMPT_TEMPLATE), tokenized with BOS to at most 256 + 95 ids, and the first 95 ids (BOS, the system block
// and the user header) are cut off again after the LLM has run, so the DiT sees only the prompt's tokens and the
// closing <|eot_id|> (reference §3.4). This module holds that text and the crop rule, so the ids the LLM gets and
// the slice the DiT gets are decided in one place.

import { PromptTemplateError } from '../errors/pipeline.ts';
import type { LlamaTokenizer } from './llamaTokenizer.ts';

/** diffusers' DEFAULT_PROMPT_TEMPLATE["template"]; `{}` is where the prompt goes (no spaces between "video." and "2."). */
export const HUNYUAN_PROMPT_TEMPLATE =
  '<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: ' +
  '1. The main content and theme of the video.' +
  '2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.' +
  '3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.' +
  '4. background environment, light, style and atmosphere.' +
  '5. camera angles, movements, and transitions used in the video:<|eot_id|>' +
  '<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>';

/** diffusers' DEFAULT_PROMPT_TEMPLATE["crop_start"]: BOS + the 94 template tokens before the prompt. */
export const HUNYUAN_CROP_START = 95;

/** FramePack's encode_prompt_conds max_length: the most prompt tokens (with the closing <|eot_id|>) the DiT gets. */
export const DEFAULT_PROMPT_MAX_LENGTH = 256;

const PLACEHOLDER = '{}';

/** The template with the prompt in place of `{}` (Python's str.format with one positional argument). */
export function fillPromptTemplate(prompt: string): string {
  const at = HUNYUAN_PROMPT_TEMPLATE.indexOf(PLACEHOLDER);
  return HUNYUAN_PROMPT_TEMPLATE.slice(0, at) + prompt + HUNYUAN_PROMPT_TEMPLATE.slice(at + PLACEHOLDER.length);
}

export interface LlamaPromptTokens {
  /** The LLM's input ids without padding: BOS + templated text, truncated to cropStart + maxLength. */
  ids: number[];
  /** How many leading ids are dropped from the LLM's output (95). */
  cropStart: number;
  /** ids[cropStart:], the tokens whose hidden states FramePack keeps (prompt + <|eot_id|> unless truncated). */
  keptIds: number[];
  /** sum(attention_mask) in the reference, i.e. ids.length: the LLM need only run on these (padding is on the right). */
  validLength: number;
  /** True when the templated text was longer than cropStart + maxLength and its tail (at least <|eot_id|>) was cut. */
  truncated: boolean;
}

/**
 * Tokenizes the prompt the way FramePack's encode_prompt_conds does: template, BOS, truncation of the whole
 * sequence to 95 + maxLength (HF truncates before cropping, so a long prompt loses its closing <|eot_id|>), then
 * the crop of 95. Padding is left out: with right padding and causal attention it changes none of the kept states.
 */
export function encodeLlamaPrompt(
  tokenizer: LlamaTokenizer,
  prompt: string,
  maxLength = DEFAULT_PROMPT_MAX_LENGTH,
  cropStart = HUNYUAN_CROP_START,
): LlamaPromptTokens {
  const full = tokenizer.encode(fillPromptTemplate(prompt), { addBos: true });
  const limit = cropStart + maxLength;
  const ids = full.length > limit ? full.slice(0, limit) : full;
  return {
    ids,
    cropStart,
    keptIds: ids.slice(cropStart),
    validLength: ids.length,
    truncated: full.length > limit,
  };
}

/** How many ids BOS + the template text before `{}` tokenize to (95 with the real Llama-3 vocabulary). */
export function templatePrefixLength(tokenizer: LlamaTokenizer): number {
  const prefix = HUNYUAN_PROMPT_TEMPLATE.slice(0, HUNYUAN_PROMPT_TEMPLATE.indexOf(PLACEHOLDER));
  return tokenizer.encode(prefix, { addBos: true }).length;
}

/**
 * Checks that the crop of 95 removes exactly the template prefix with this tokenizer, so a wrong or modified
 * tokenizer file fails at load time instead of silently feeding the DiT part of the system prompt.
 * Throws PromptTemplateError otherwise.
 */
export function assertTemplatePrefix(tokenizer: LlamaTokenizer): void {
  const n = templatePrefixLength(tokenizer);
  if (n !== HUNYUAN_CROP_START) {
    throw new PromptTemplateError(
      `The prompt template's prefix tokenizes to ${n} ids (with BOS), but FramePack crops ${HUNYUAN_CROP_START}; ` +
        'the tokenizer files are not the Llama-3 tokenizer HunyuanVideo uses.',
    );
  }
}

// Reference cases on WebGPU (SwiftShader in CI) through check-reference's own case runner (`--provider webgpu`): a
// DiT forward through the block plans on our kernels (float weights, fp32) and the text/image encoders on ORT's
// WebGPU EP, so the WebGPU path of every network is exercised in CI (the VAE and CLIP have theirs in their own test
// files).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCase } from '../../src/cli/referenceCases.ts';
import '../../src/cli/registerCases.ts';
import { fixturesDir } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';

describe('reference cases on WebGPU (SwiftShader), fp32', () => {
  for (const file of ['dit_forward_f1.safetensors', 'llama_hidden.safetensors', 'siglip_hidden.safetensors']) {
    it(`${file} within the fixtures' bar`, async () => {
      await ortReady();
      const r = await runCase(join(fixturesDir(), file), { provider: 'webgpu', dtype: 'float32', quantized: false });
      for (const t of r.results) console.log(`${file} webgpu fp32 ${t.tensor}: err ${t.rel.toExponential(2)} (abs ${t.abs.toExponential(2)})`);
      expect(r.results.length).toBeGreaterThan(0);
      expect(r.pass).toBe(true);
    });
  }
});

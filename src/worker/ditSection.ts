// Binds the DiT runner to one section: the context latents, the RoPE table of the section's index layout, the
// job's conditioning, and a TeaCache slot per guidance branch. The result is the velocity model the sampler
// calls once per step. The loop, the CLI and check-reference all get their velocity model from here.

import type { Tensor } from '../pipeline/tensor.ts';
import type { GuidanceBranch, VelocityModel } from '../pipeline/fmWrapper.ts';
import { packedRopeTable, type PackedRopeIndices } from '../pipeline/ropeTables.ts';
import { TeaCacheRule } from '../pipeline/teacache.ts';
import type { SectionContext } from '../pipeline/history.ts';
import type { DiTRunner, TeaCacheSlot } from './dit.ts';

/** The prompt's and the image's conditioning for one guidance branch. */
export interface Conditioning {
  /** Llama states [1, L, textDim] (valid tokens, or padded with `textMask`). */
  textStates: Tensor;
  textMask?: readonly boolean[];
  /** CLIP pooled [1, P]. */
  pooled: Tensor;
  /** SigLIP states [1, M, imageDim]. */
  imageEmbeddings: Tensor;
}

export interface SectionModelOptions {
  /** Distilled guidance as the DiT sees it (·1000, bf16-rounded on the 16-bit path): see distilledGuidanceValue. */
  guidance: number;
  /** TeaCache threshold, or null for off. */
  teacacheThreshold: number | null;
  steps: number;
  signal?: AbortSignal;
  /** Called after each DiT call with whether the blocks ran and the rule's accumulator (for tests and stats). */
  onCall?(branch: GuidanceBranch, computed: boolean, accumulated: number): void;
}

/** Records the rule's verdict so the caller can see which calls ran the blocks. */
class ObservedRule extends TeaCacheRule {
  lastComputed = true;
  override step(relL1?: number): boolean {
    this.lastComputed = super.step(relL1);
    return this.lastComputed;
  }
}

/** A section's velocity model, and what frees the state it keeps (TeaCache's buffers) when the section is done. */
export type SectionVelocityModel = VelocityModel & { release(): void };

export function sectionVelocityModel(
  dit: DiTRunner,
  layout: PackedRopeIndices,
  context: SectionContext,
  latentShape: number[],
  conditioning: { positive: Conditioning; negative?: Conditioning },
  options: SectionModelOptions,
): SectionVelocityModel {
  const [, , , h, w] = latentShape;
  const rope = packedRopeTable(layout, h, w, dit.config.patchSize, { axesDim: dit.config.ropeAxesDim, theta: dit.config.ropeTheta });
  // One TeaCache slot per branch: the rule assumes one call per step (reference §8).
  const slots = new Map<GuidanceBranch, TeaCacheSlot & { rule: ObservedRule }>();
  const model: VelocityModel = async (x, timestep, branch) => {
    const cond = branch === 'positive' ? conditioning.positive : conditioning.negative;
    if (!cond) throw new Error('Real CFG needs a negative prompt encoding; none was given.');
    let slot = slots.get(branch);
    if (!slot && options.teacacheThreshold !== null) {
      slot = { rule: new ObservedRule(options.steps, options.teacacheThreshold) };
      slots.set(branch, slot);
    }
    const v = await dit.forward(
      {
        latents: { data: x, shape: latentShape },
        timestep,
        guidance: options.guidance,
        textStates: cond.textStates,
        textMask: cond.textMask,
        pooledProjections: cond.pooled,
        imageEmbeddings: cond.imageEmbeddings,
        cleanLatents: context.cleanLatents,
        cleanLatents2x: context.cleanLatents2x,
        cleanLatents4x: context.cleanLatents4x,
        rope,
      },
      { teacache: slot, signal: options.signal },
    );
    options.onCall?.(branch, slot ? slot.rule.lastComputed : true, slot ? slot.rule.accumulated : 0);
    return v.data;
  };
  return Object.assign(model, {
    release() {
      for (const slot of slots.values()) slot.state?.release();
      slots.clear();
    },
  });
}

// The FramePack generation loop (framepack-reference.md §7): for each section, pack the context from the history,
// draw the section's noise from the job's seeded generator, sample the DiT with UniPC, append the new latents,
// decode the newest ones and join them into the video. It is written against small interfaces (a per-section
// velocity model, a VAE decoder, a frame sink) so the worker, the CLI and check-reference run the same loop.

import type { Tensor } from '../pipeline/tensor.ts';
import { TorchGenerator, type GeneratorPosition } from '../pipeline/torchRandom.ts';
import { sectionPlan, type LoopVariant, type SectionLayout } from '../pipeline/sectionPlan.ts';
import { appendSection, createHistory, latentsToDecode, sectionContext, type LatentHistory, type SectionContext } from '../pipeline/history.ts';
import { fluxMu, fluxSigmas, noisyTokenCount } from '../pipeline/sigmas.ts';
import { fmDenoiser, type ReferenceDtype, type VelocityModel } from '../pipeline/fmWrapper.ts';
import { sampleUniPC } from '../pipeline/unipc.ts';
import { startStreaming, appendStreaming, prependStreaming, type StreamingJoin } from '../pipeline/softAppend.ts';
import { overlapFrames } from '../pipeline/frameCount.ts';

export interface LoopSettings {
  variant: LoopVariant;
  sections: number;
  latentWindow: number;
  steps: number;
  seed: number | bigint;
  /** Real CFG (1 = off) and its rescale. */
  cfg: number;
  cfgRescale: number;
  /** Numerics of the reference being reproduced: 'bfloat16' rounds x and the timestep as the real model sees them. */
  referenceDtype: ReferenceDtype;
}

/** Everything one section's DiT calls need besides x and the timestep. */
export interface SectionInputs {
  layout: SectionLayout;
  context: SectionContext;
  /** Latent grid of the noisy window. */
  latentShape: number[];
}

/** What the loop needs from the networks. */
export interface LoopNetworks {
  /** The velocity model for one section (its context fixed); called `steps` times per branch; released after the section when it can be. */
  sectionModel(inputs: SectionInputs): Promise<VelocityModel & { release?(): void }>;
  /** VAE decode of [1, C, n, h, w] scaled latents → pixels [1, 3, 4n − 3, H, W] in [−1, 1]. */
  decode(latents: Tensor): Promise<Tensor>;
}

/** Where the frames go: each call carries frames that are final, in the order the placement says. */
export interface FrameSink {
  /**
   * `final` frames are finished. F1 (placement 'after'): they follow every earlier final frame.
   * Original ('before'): they precede every earlier final frame. `held` are the overlap frames still open.
   */
  frames(final: Tensor, held: Tensor, placement: 'before' | 'after', sectionIndex: number): void | Promise<void>;
}

export interface LoopEvents {
  onStep?(section: number, step: number, steps: number, denoised: Float32Array): void | Promise<void>;
  onSectionDone?(section: number, history: LatentHistory, generated: Tensor): void | Promise<void>;
  /** After a section's frames reached the sink: everything a later run needs to go on from there (see LoopState). */
  onCheckpoint?(state: LoopState): void | Promise<void>;
}

/**
 * The loop between two sections: what a job resumed after a lost device or a closed tab starts from, so that it
 * neither recomputes a finished section nor draws different noise (frames equal to an uninterrupted run).
 */
export interface LoopState {
  /** Sections finished, in generation order; the next one is sectionPlan(...)[sectionsDone]. */
  sectionsDone: number;
  history: LatentHistory;
  /** The overlap frames [1, 3, n, H, W] in [−1, 1] the next section blends with (the sink already holds them too). */
  held: Tensor;
  /** The noise generator after the finished sections' draws. */
  generator: GeneratorPosition;
}

export interface LoopOptions {
  /** Checked before every DiT call; the sections finished so far have already reached the sink. */
  signal?: AbortSignal;
  /** Anchors the first generated section (original variant only). */
  endLatent?: Tensor;
  /** Go on from this state instead of starting: its sections are not run again (their frames are not sent again). */
  resume?: LoopState;
}

export interface LoopResult {
  history: LatentHistory;
  generated: Tensor[];
}

/**
 * Runs the loop to the end or until the signal aborts. `generated` holds the sections this call ran (after a
 * resume, not the earlier ones).
 */
export async function runFramePackLoop(
  settings: LoopSettings,
  startLatent: Tensor,
  networks: LoopNetworks,
  sink: FrameSink,
  events: LoopEvents = {},
  options: LoopOptions = {},
): Promise<LoopResult> {
  const { variant, sections, latentWindow, steps } = settings;
  const { signal, endLatent, resume } = options;
  const [, channels, , h, w] = startLatent.shape;
  const latentShape = [1, channels, latentWindow, h, w];
  const generator = resume ? TorchGenerator.at(resume.generator) : new TorchGenerator(settings.seed);
  const sigmas = fluxSigmas(steps, fluxMu(noisyTokenCount(latentWindow, h, w)));
  let history = resume?.history ?? createHistory(variant, startLatent);
  let held: Tensor | null = resume?.held ?? null;
  const generated: Tensor[] = [];

  for (const layout of sectionPlan(variant, sections, latentWindow).slice(resume?.sectionsDone ?? 0)) {
    signal?.throwIfAborted();
    const k = layout.order;
    // One draw per section, consuming the job's generator stream in order, as the reference does.
    const noise = generator.randn(latentShape);
    const context = sectionContext(history, startLatent, endLatent);
    const model = await networks.sectionModel({ layout, context, latentShape });
    const denoiser = fmDenoiser(model, { dtype: settings.referenceDtype, cfg: settings.cfg, cfgRescale: settings.cfgRescale });
    let x0: Float32Array;
    try {
      x0 = await sampleUniPC(denoiser, noise.data, sigmas, {
        variant: 'bh1',
        signal,
        onStep: (i, denoised) => events.onStep?.(k, i, steps, denoised),
      });
    } finally {
      model.release?.();
    }
    const section: Tensor = { data: x0, shape: latentShape };
    generated.push(section);
    history = appendSection(history, section, startLatent, layout.isLast);
    await events.onSectionDone?.(k, history, section);

    const step = latentsToDecode(history, latentWindow, layout.isLast);
    const pixels = await networks.decode(step.latents);
    const join: StreamingJoin = held === null
      ? startStreaming(pixels, overlapFrames(latentWindow), step.placement)
      : step.placement === 'after'
        ? appendStreaming(held, pixels, step.overlap)
        : prependStreaming(pixels, held, step.overlap);
    held = join.held;
    await sink.frames(join.final, join.held, step.placement, k);
    await events.onCheckpoint?.({ sectionsDone: k + 1, history, held, generator: generator.position() });
  }
  return { history, generated };
}


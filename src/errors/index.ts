// Every error class of the app, in one place that imports nothing else: the worker throws them, sends them to the
// page as {name, message, details} (src/worker/serializeError.ts), and the page rebuilds the same class by name
// from ERROR_CLASSES (src/ui/errors.ts) — so `instanceof QuotaError` works on both sides and the page bundle needs
// none of the GPU, onnxruntime, download or video code that throws them. A new error class goes into one of the
// area modules and into ERROR_CLASSES (test/unit/errorRoundTrip.test.ts fails otherwise), and into
// PROGRAMMING_ERRORS when no person can act on it.

import {
  AdaNormConfigError, AdaNormShapeError, AttentionConfigError, AttentionShapeError, KernelCompileError, MatmulConfigError, MatmulShapeError,
  Q4GemvConfigError, Q4GemvShapeError, Q4MatmulConfigError, Q4MatmulShapeError, QkvHeadsConfigError, QkvHeadsShapeError,
  TeaCacheKernelError, VaeKernelConfigError, VaeKernelShapeError,
} from './kernels.ts';
import { DeviceLostError, GpuOutOfMemoryError, NoAdapterError, NoWebGPUError, RepeatedDeviceLossError } from './gpu.ts';
import {
  BucketError, DenoiserShapeError, FrameCountError, HistoryError, ImageSizeError, InvalidNoiseShapeError, InvalidSeedError,
  LatentPreviewError, NotRoundableError, PromptTemplateError, RopeTableError, SectionPlanError, SoftAppendError,
  TokenizerFormatError, VelocityShapeError,
} from './pipeline.ts';
import { ClipConfigError, DiTConfigError, LlamaConfigError, SiglipConfigError, VaeConfigError } from './models.ts';
import {
  DiTInputError, DiTKernelInputError, JobBusyError, JobResumeError, JobStopped, ModelPackageError, PixelValuesShapeError,
  TeaCacheResidualMissing, TokenIdsError, VaeInputError,
} from './engine.ts';
import {
  CheckpointFileMissing, HttpError, HttpFileNotFound, IntegrityError, NetworkError, PackFormatError, PackVersionError, QuotaError,
  SafetensorsFormatError, StoredModelError, TensorMissing,
} from './weights.ts';
import { FrameConvertError, NoVideoEncoderError, UnsupportedVideoCodecError, VideoEncodeError, VideoError, VideoInputError } from './video.ts';
import { ImageFileError, ImageInputError, WorkerCrashedError } from './ui.ts';

export * from './gpu.ts';
export * from './kernels.ts';
export * from './pipeline.ts';
export * from './models.ts';
export * from './engine.ts';
export * from './weights.ts';
export * from './video.ts';
export * from './ui.ts';

/** Any error class, whatever its constructor takes. */
export type ErrorClass = abstract new (...args: never[]) => Error;

// Keys are written out (not taken from `cls.name`) because a minifier may rename classes; each key is the class's
// `name` field, which the test checks.
const classes = {
  // gpu.ts
  NoWebGPUError, NoAdapterError, DeviceLostError, RepeatedDeviceLossError, GpuOutOfMemoryError,
  // kernels.ts
  KernelCompileError, MatmulConfigError, MatmulShapeError, Q4MatmulConfigError, Q4MatmulShapeError, Q4GemvConfigError, Q4GemvShapeError,
  AttentionConfigError, AttentionShapeError, QkvHeadsConfigError, QkvHeadsShapeError, AdaNormConfigError, AdaNormShapeError,
  TeaCacheKernelError, VaeKernelConfigError, VaeKernelShapeError,
  // pipeline.ts
  BucketError, ImageSizeError, TokenizerFormatError, PromptTemplateError, NotRoundableError, SectionPlanError,
  FrameCountError, HistoryError, SoftAppendError, LatentPreviewError, RopeTableError, DenoiserShapeError,
  VelocityShapeError, InvalidSeedError, InvalidNoiseShapeError,
  // models.ts
  DiTConfigError, LlamaConfigError, ClipConfigError, SiglipConfigError, VaeConfigError,
  // engine.ts
  DiTInputError, TeaCacheResidualMissing, DiTKernelInputError, VaeInputError, PixelValuesShapeError, TokenIdsError,
  ModelPackageError, JobBusyError, JobStopped, JobResumeError,
  // weights.ts
  CheckpointFileMissing, TensorMissing, HttpError, HttpFileNotFound, NetworkError, SafetensorsFormatError,
  IntegrityError, StoredModelError, QuotaError, PackVersionError, PackFormatError,
  // video.ts
  VideoError, NoVideoEncoderError, UnsupportedVideoCodecError, VideoEncodeError, VideoInputError, FrameConvertError,
  // ui.ts
  ImageInputError, WorkerCrashedError, ImageFileError,
} satisfies Record<string, ErrorClass>;

/** The name of a registered error class. */
export type ErrorName = keyof typeof classes;

/** Every error class of the app by its `name`: what the page rebuilds a serialized error from. */
export const ERROR_CLASSES: Readonly<Record<string, ErrorClass>> = classes;

/**
 * Programming errors: no person can act on them (a shape, plan or config the code got wrong, a kernel the driver
 * rejects), so a report needs the stack. serializeError sends the stack of these, and only these; rebuildError puts
 * it back.
 */
export const PROGRAMMING_ERRORS: ReadonlySet<string> = new Set<ErrorName>([
  // kernels: unsupported options, mismatched buffers, a shader the driver rejects
  'KernelCompileError', 'MatmulConfigError', 'MatmulShapeError', 'Q4MatmulConfigError', 'Q4MatmulShapeError', 'Q4GemvConfigError', 'Q4GemvShapeError',
  'AttentionConfigError', 'AttentionShapeError', 'QkvHeadsConfigError', 'QkvHeadsShapeError', 'AdaNormConfigError', 'AdaNormShapeError',
  'TeaCacheKernelError', 'VaeKernelConfigError', 'VaeKernelShapeError',
  // networks: configs the builders cannot run, inputs of the wrong shape
  'DiTConfigError', 'LlamaConfigError', 'ClipConfigError', 'SiglipConfigError', 'VaeConfigError',
  'DiTInputError', 'TeaCacheResidualMissing', 'DiTKernelInputError', 'VaeInputError', 'PixelValuesShapeError',
  // pipeline: plans, counts and shapes the caller got wrong
  'BucketError', 'ImageSizeError', 'SectionPlanError', 'FrameCountError', 'HistoryError', 'SoftAppendError',
  'LatentPreviewError', 'RopeTableError', 'DenoiserShapeError', 'VelocityShapeError', 'InvalidNoiseShapeError',
  // video: frames of the wrong size or order
  'VideoInputError', 'FrameConvertError',
]);

/** Whether an error of this name is a programming error (see PROGRAMMING_ERRORS). */
export const isProgrammingError = (name: string): boolean => PROGRAMMING_ERRORS.has(name);

// Failures of the GPU that a person can act on, one class each, so the page can say what happened and what to do.
// They live here, apart from the device code that throws them, because the page must rebuild them by name from
// what the worker sends ({name, message, details}) without pulling WebGPU or onnxruntime code into its bundle:
// this module imports nothing and does nothing when imported.

/** The browser has no WebGPU (navigator.gpu is missing): use a current Chrome or Edge; on Linux, enable WebGPU. */
export class NoWebGPUError extends Error {
  override name = 'NoWebGPUError';
  constructor(detail = 'navigator.gpu is missing') {
    super(
      `This browser does not offer WebGPU (${detail}). Use a current Chrome or Edge on a machine with a GPU; ` +
        'on Linux, Chrome needs --enable-unsafe-webgpu or the Vulkan backend enabled.',
    );
  }
}

/** WebGPU is there but offers no adapter: update the graphics driver or turn hardware acceleration on. */
export class NoAdapterError extends Error {
  override name = 'NoAdapterError';
  constructor() {
    super('WebGPU is present but no GPU adapter was found. Update the graphics driver, or check that hardware acceleration is on in the browser settings.');
  }
}

/** The GPU device was lost during a job (driver reset, GPU taken away): finished sections are kept; start again. */
export class DeviceLostError extends Error {
  override name = 'DeviceLostError';
  constructor(reason: string, message: string) {
    super(`The GPU device was lost (${reason}${message ? `: ${message}` : ''}), most likely a GPU reset (Windows resets a GPU busy for 2 s) or a driver change. The sections finished before it are kept.`);
  }
}

/** The device was lost again after the job's recoveries (worker/jobRecovery.ts): what was kept, what to try. */
export class RepeatedDeviceLossError extends DeviceLostError {
  override name = 'RepeatedDeviceLossError';
  constructor(losses: number, sectionsKept: number) {
    super('', '');
    this.message = `The GPU device was lost ${losses} times during this job, most likely GPU resets (Windows resets a GPU busy for 2 s) ` +
      `or the driver, so the job stopped; the ${sectionsKept} finished section${sectionsKept === 1 ? ' is' : 's are'} kept. Try a smaller ` +
      'resolution or memory budget, close other GPU-heavy tabs and programs, or update the graphics driver.';
  }
}

/**
 * A GPU buffer could not be allocated, or exceeds the device's per-buffer limit: choose a smaller size or budget.
 * `limit` given: a planner's check against the device's buffer limit. `inUse` given: the device refused an
 * allocation (an out-of-memory error scope caught it, runtime/gpuOutOfMemory.ts) while that much was live.
 */
export class GpuOutOfMemoryError extends Error {
  override name = 'GpuOutOfMemoryError';
  constructor(what: string, bytes: number, limit?: number, inUse?: number) {
    const mb = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MiB` : `${(n / 2 ** 10).toFixed(0)} KiB`);
    const head = inUse !== undefined
      ? `The GPU ran out of memory in ${what}: it refused part of the ${mb(bytes)} asked for there, while ${mb(inUse)} of GPU buffers made here were held. ` +
        'Every finished section is kept'
      : `The GPU could not allocate ${mb(bytes)} for ${what}` + (limit !== undefined ? ` (this device allows at most ${mb(limit)} in one buffer)` : '');
    super(`${head}. Choose a smaller resolution or a lower memory budget, or close other GPU-heavy tabs and programs.`);
  }
}

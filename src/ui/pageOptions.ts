// Settings the page takes from its own address, for tests and diagnostics (the app needs none of them):
//   ?modelBase=URL          fetch the tiny model from URL instead of this site's models/tiny/
//   ?hubEndpoint=URL        a Hugging Face mirror (or a local server in the official layout)
//   ?packUrl=URL            a pack of converted weights (npm run convert): the models it lists come from there
//   ?maxGpuBufferBytes=N    plan as if the GPU allowed at most N bytes in one buffer (emulates a smaller GPU)
//   ?dtype=float32|float16  activation precision instead of the adapter's best
//   ?loseDeviceAt=S:N,…     destroy the GPU device after step N of section S (0-based, as the step log) or as a
//                           stage begins (text, image, vae-encode, sampling, decode), each once: a GPU reset
//                           rehearsed, to see the job go on from its last finished section
//   ?oversizeBufferIn=STAGE the stage (as the out-of-memory message names it, e.g. "the VAE encoder") first asks for
//                           one buffer of the device's largest size, which SwiftShader's driver refuses
import type { WorkerOptions } from '../worker/framepackWorker.ts';

export function workerOptionsFromUrl(url: URL, baseUri: string): WorkerOptions {
  const q = url.searchParams;
  const options: WorkerOptions = { tinyModelUrl: new URL(q.get('modelBase') ?? 'models/tiny/', baseUri).href };
  const hub = q.get('hubEndpoint');
  if (hub) options.hubEndpoint = hub;
  const pack = q.get('packUrl');
  if (pack) options.packUrl = new URL(pack, baseUri).href;
  const limit = Number(q.get('maxGpuBufferBytes'));
  if (limit > 0) options.maxGpuBufferBytes = limit;
  const dtype = q.get('dtype');
  if (dtype === 'float32' || dtype === 'float16') options.dtype = dtype;
  const losses = q.get('loseDeviceAt');
  if (losses) options.loseDeviceAt = losses.split(',').filter((x) => /^(\d+:\d+|text|image|vae-encode|sampling|decode)$/.test(x));
  const oversize = q.get('oversizeBufferIn');
  if (oversize) options.oversizeBufferIn = oversize;
  return options;
}

// How every browser test launches Chromium: Debian's binary (CI is offline, so no Playwright download) with
// WebGPU on SwiftShader and Chromium's background traffic switched off (the machine refuses it).

import type { LaunchOptions } from '@playwright/test';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const QUIET = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SWIFTSHADER_WEBGPU = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader'];

export function chromiumLaunchOptions(options: { webgpu?: boolean } = {}): LaunchOptions {
  const webgpu = options.webgpu ?? true;
  return {
    executablePath: CHROMIUM,
    headless: true,
    // Without the unsafe-WebGPU flags, headless Chromium on Linux offers no navigator.gpu adapter.
    args: [...QUIET, ...(webgpu ? SWIFTSHADER_WEBGPU : ['--disable-webgpu'])],
  };
}

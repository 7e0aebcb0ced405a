// What the browser's storage estimate means, shared by the download planner (src/weights/download.ts) and the
// page's capability panel. It is here, with no dependencies, so the page can read it without importing the
// download code.

/**
 * Chromium reports `quota = usage + 10 GiB` whatever the real limit (kStaticStorageQuota, on by default in current
 * Chromium — measured in 156 — because the real quota would let pages detect incognito windows). That figure is no
 * limit, so it yields null (unknown), and the first refused write reports the shortage instead.
 */
export const CHROMIUM_STATIC_HEADROOM = 10 * 1024 ** 3;

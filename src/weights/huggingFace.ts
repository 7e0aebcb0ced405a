// The official Hugging Face repositories as a download source: nobody has to host a converted copy. Which repo,
// subfolder and files each network comes from is data (manifests/huggingface.json); this module only turns it
// into URLs and the options downloadCheckpoint takes. `endpoint` points the same layout at a mirror or at the
// tests' local server.

import manifest from './manifests/huggingface.json';
import { httpFolderSource, type HttpSourceOptions } from './httpSource.ts';
import type { DownloadOptions } from './download.ts';

export interface HubComponent {
  repo: string;
  /** '' for the repository root. */
  subfolder: string;
  config: string | null;
  /** Single-file name; shards come from `${stem}.safetensors.index.json` when the repo has one. Null: no weights. */
  weights: string | null;
  index?: string | null;
  shards?: string[];
  /** Other files the app needs as they are (tokenizers, preprocessor settings). */
  files: string[];
}

export type ComponentName = keyof typeof manifest.components;

export const HUGGING_FACE = 'https://huggingface.co';

export function hubComponent(name: ComponentName): HubComponent {
  return manifest.components[name] as HubComponent;
}

/** `{endpoint}/{repo}/resolve/{revision}/{subfolder}/` — the folder every file of a component is under. */
export function hubFolderUrl(component: HubComponent, endpoint = HUGGING_FACE, revision = manifest.revision): string {
  const path = [component.repo, 'resolve', revision, ...(component.subfolder ? [component.subfolder] : [])].map((p) => p.split('/').map(encodeURIComponent).join('/'));
  return `${endpoint.replace(/\/$/, '')}/${path.join('/')}/`;
}

export function hubFileUrl(component: HubComponent, file: string, endpoint = HUGGING_FACE, revision = manifest.revision): string {
  return new URL(file, hubFolderUrl(component, endpoint, revision)).href;
}

export interface HubOptions extends HttpSourceOptions {
  /** A Hugging Face access token, for gated repositories. */
  token?: string;
  endpoint?: string;
  revision?: string;
}

/**
 * What downloadCheckpoint needs to fetch one component from the hub (the caller adds store, model, convert…).
 * The fingerprint is the folder URL, so pointing at another revision or mirror replaces the cached copy.
 */
export function hubDownload(name: ComponentName, options: HubOptions = {}): Pick<DownloadOptions, 'folder' | 'where' | 'weightsFile' | 'configFile' | 'extraFiles' | 'fingerprint'> {
  const component = hubComponent(name);
  const { token, endpoint, revision, ...http } = options;
  const url = hubFolderUrl(component, endpoint, revision);
  const headers = token ? { ...http.headers, Authorization: `Bearer ${token}` } : http.headers;
  return {
    folder: httpFolderSource(url, { ...http, headers }),
    where: url,
    weightsFile: component.weights,
    configFile: component.config,
    extraFiles: component.files,
    fingerprint: url,
  };
}

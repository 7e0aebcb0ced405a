declare module '*.svelte' {
  import type { Component } from 'svelte';
  const component: Component<Record<string, unknown>>;
  export default component;
}

/** The bundled tiny model's content hash, set by vite.config.ts (absent outside a Vite build). */
declare const __TINY_MODEL_HASH__: string | undefined;

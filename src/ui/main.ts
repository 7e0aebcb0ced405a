// Entry of the page: mounts the Svelte app (everything heavy happens in the worker) and, in the built app,
// registers the service worker that keeps the app shell for offline use.
import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';

mount(App, { target: document.getElementById('app')! });

if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  navigator.serviceWorker.register('./sw.js').catch((e: Error) => console.warn(`Offline use is unavailable: ${e.message}`));
}

// Entry of the page: mounts the Svelte app. Everything heavy happens in the worker.
import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';

mount(App, { target: document.getElementById('app')! });

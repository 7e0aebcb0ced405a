// Small context helpers: App creates the one worker client and the job form, and components below it get them
// here instead of through props passed down every level.

import { getContext, setContext } from 'svelte';
import type { FramePackClient } from './framepackClient.svelte.ts';
import type { JobForm } from './jobForm.svelte.ts';

const CLIENT = Symbol('framepack-client');
const FORM = Symbol('job-form');

export function provideClient(client: FramePackClient): void {
  setContext(CLIENT, client);
}

export function useClient(): FramePackClient {
  return getContext<FramePackClient>(CLIENT);
}

export function provideForm(form: JobForm): void {
  setContext(FORM, form);
}

export function useForm(): JobForm {
  return getContext<JobForm>(FORM);
}

// Registers the case handlers that need the networks (they live beside their runners in src/worker/), so that
// referenceCases.ts stays free of any particular network.
export {};

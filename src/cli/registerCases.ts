// Registers the case handlers that run the networks (src/cli/networkCases.ts), kept apart from referenceCases.ts
// so that the sigma and noise cases load without onnxruntime.
import './networkCases.ts';

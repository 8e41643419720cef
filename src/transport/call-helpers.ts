/** Bearer-token parsing lives in src/wire, shared with the SDK; re-exported for the adapters. */
export { bearerToken } from '../wire/metadata.js';

import { VigilError } from './errors.js';
import type { AgentCard } from './model.js';

/**
 * An agent card as a heartbeat carried it, decoded only on demand: a card
 * whose fingerprint equals that of the last card accepted from the same
 * workspace is neither decoded nor validated again.
 */
export interface CardInput {
  /**
   * A digest of the card exactly as received (equal digests: equal cards), or
   * undefined when there is none to compare, which means "always validate".
   */
  fingerprint(): string | undefined;
  /** The card as a JSON value (decoding it if it has not been). */
  decode(): unknown;
}

/** A card already decoded into a JSON value: always validated. */
export function cardFromValue(value: unknown): CardInput {
  return { fingerprint: () => undefined, decode: () => value };
}

/** Largest accepted agent card, serialized as JSON. */
export const MAX_AGENT_CARD_BYTES = 64 * 1024;
/** Deepest accepted nesting of objects and lists in a card. */
export const MAX_AGENT_CARD_DEPTH = 32;

/**
 * Validates an A2A agent card and returns its JSON serialization.
 *
 * A valid card is a JSON object with a non-empty string `name` and at least one
 * endpoint: a non-empty string `url`, or a non-empty `supportedInterfaces` (or
 * `supported_interfaces`) list whose entries all carry a non-empty string
 * `url`. It is at most 64 KiB serialized. Anything else is AGENT_CARD_INVALID.
 */
export function validateAgentCard(card: unknown): string {
  if (typeof card !== 'object' || card === null || Array.isArray(card)) {
    throw invalid('the agent card must be a JSON object');
  }
  const record = card as AgentCard;
  // Checked before serializing: a pathological depth must be refused, not overflow the stack.
  if (depthOf(record) > MAX_AGENT_CARD_DEPTH) {
    throw invalid(`the agent card nests deeper than ${MAX_AGENT_CARD_DEPTH} levels`);
  }
  const serialized = JSON.stringify(record);
  const bytes = Buffer.byteLength(serialized, 'utf8');
  if (bytes > MAX_AGENT_CARD_BYTES) {
    throw invalid(`the agent card is ${bytes} bytes; at most ${MAX_AGENT_CARD_BYTES} are allowed`, {
      sizeBytes: String(bytes),
      limitBytes: String(MAX_AGENT_CARD_BYTES),
    });
  }
  if (!nonEmptyString(record['name'])) {
    throw invalid('the agent card needs a non-empty string "name"');
  }
  if (!nonEmptyString(record['url']) && !hasInterfaces(record)) {
    throw invalid(
      'the agent card needs an endpoint: a "url", or "supportedInterfaces" entries with a "url"',
    );
  }
  return serialized;
}

/** Most endpoints a card may name (each is checked against the URL policy). */
export const MAX_AGENT_CARD_ENDPOINTS = 16;

/**
 * The endpoint URLs of a valid card (its `url` and every
 * `supportedInterfaces[].url`), distinct, in order. These are what A2A
 * clients call, so they follow the URL policy like a Register URL.
 */
export function agentCardUrls(card: unknown): string[] {
  const record = card as AgentCard;
  const urls: string[] = [];
  if (typeof record['url'] === 'string') urls.push(record['url']);
  const list = record['supportedInterfaces'] ?? record['supported_interfaces'];
  if (Array.isArray(list)) {
    for (const entry of list as unknown[]) {
      const url = (entry as Record<string, unknown> | null)?.['url'];
      if (typeof url === 'string') urls.push(url);
    }
  }
  const distinct = [...new Set(urls)];
  if (distinct.length > MAX_AGENT_CARD_ENDPOINTS) {
    throw invalid(
      `the agent card names ${distinct.length} endpoints; at most ${MAX_AGENT_CARD_ENDPOINTS} are allowed`,
    );
  }
  return distinct;
}

function hasInterfaces(card: AgentCard): boolean {
  const list = card['supportedInterfaces'] ?? card['supported_interfaces'];
  return (
    Array.isArray(list) &&
    list.length > 0 &&
    list.every(
      (entry: unknown) =>
        typeof entry === 'object' &&
        entry !== null &&
        nonEmptyString((entry as Record<string, unknown>)['url']),
    )
  );
}

function nonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.trim().length > 0;
}

function invalid(message: string, metadata: Record<string, string> = {}): VigilError {
  return new VigilError('AGENT_CARD_INVALID', message, metadata);
}

/** Nesting depth of a JSON value, measured without recursion (stops counting past the limit). */
function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (typeof current !== 'object' || current === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > MAX_AGENT_CARD_DEPTH) return deepest;
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return deepest;
}

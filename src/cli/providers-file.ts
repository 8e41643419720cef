import { readFileSync } from 'node:fs';
import { checkCatalog, type ProviderCatalog, type ProviderSpec } from '../domain/projection.js';

/**
 * `--providers-file`: a JSON provider catalog replacing the built-in one,
 * validated at start (a bad file stops the start with the reason):
 *
 * {"providers": [{"name": "minimax", "credential": "MINIMAX_API_KEY",
 *   "protocol": "anthropic-compatible", "defaultBaseUrl": "https://api.minimax.io/anthropic",
 *   "modelPatterns": ["minimax-"]}, …]}
 *
 * Order matters: it is the order of the derive-from-model rules.
 */
export function readProvidersFile(file: string): ProviderCatalog {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read ${file} as JSON (${(error as Error).message})`);
  }
  const list = (json as { providers?: unknown } | null)?.providers;
  if (!Array.isArray(list)) throw new Error(`${file}: needs "providers", a list`);
  const providers = list.map((entry: unknown, i): ProviderSpec => {
    const p = entry as Record<string, unknown> | null;
    const patterns = p?.['modelPatterns'] ?? [];
    if (
      typeof p?.['name'] !== 'string' ||
      typeof p['credential'] !== 'string' ||
      typeof p['protocol'] !== 'string' ||
      (p['defaultBaseUrl'] !== undefined && typeof p['defaultBaseUrl'] !== 'string') ||
      !Array.isArray(patterns) ||
      !patterns.every((x) => typeof x === 'string')
    ) {
      throw new Error(
        `${file}: provider ${i} needs string name, credential, protocol, optional defaultBaseUrl and modelPatterns (strings)`,
      );
    }
    return {
      name: p['name'],
      credential: p['credential'],
      protocol: p['protocol'] as ProviderSpec['protocol'],
      defaultBaseUrl: p['defaultBaseUrl'],
      modelPatterns: patterns,
    };
  });
  return checkCatalog({ providers });
}

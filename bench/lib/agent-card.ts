/**
 * A realistic A2A agent card, about 2 KB serialized: what a real sidecar
 * registers and repeats in every heartbeat (name, description, endpoint,
 * provider, capabilities, input and output modes, several skills with tags
 * and examples, the interfaces it serves, its security schemes). The bench
 * sends it in every Register and every heartbeat, so the server's per-card
 * work (Struct decode, validation, serialization, storage) is measured at a
 * realistic size rather than on a `{name, url}` stub.
 */

/** The URL every simulated runtime registers: loopback, allowed by the default policy. */
export const RUNTIME_URL = 'http://127.0.0.1:8000';

export function agentCard(workspaceId: string): Record<string, unknown> {
  return {
    protocolVersion: '0.3.0',
    name: `bench agent ${workspaceId}`,
    description:
      'Triage and research assistant for a software team: reads issues and logs, reproduces failures, summarises findings and drafts fixes for review.',
    url: `${RUNTIME_URL}/a2a/v1`,
    preferredTransport: 'JSONRPC',
    version: '2.4.1',
    iconUrl: `${RUNTIME_URL}/static/icon.png`,
    provider: { organization: 'Example Agents Ltd', url: 'https://agents.example.com' },
    capabilities: {
      streaming: true,
      pushNotifications: true,
      stateTransitionHistory: false,
    },
    defaultInputModes: ['text/plain', 'application/json'],
    defaultOutputModes: ['text/plain', 'text/markdown', 'application/json'],
    skills: [
      {
        id: 'triage-issue',
        name: 'Triage an issue',
        description: 'Classifies a bug report, finds likely duplicates and suggests an owner.',
        tags: ['triage', 'issues', 'classification'],
        examples: ['Triage issue #4512', 'Is this crash report a duplicate?'],
      },
      {
        id: 'reproduce-failure',
        name: 'Reproduce a failure',
        description:
          'Runs the failing test or script in a sandbox and reports a minimal reproduction.',
        tags: ['testing', 'debugging', 'sandbox'],
        examples: ['Reproduce the flaky login test', 'Why does build 881 fail on arm64?'],
        inputModes: ['text/plain'],
        outputModes: ['text/markdown'],
      },
      {
        id: 'summarise-logs',
        name: 'Summarise logs',
        description: 'Condenses service logs around an incident into a timeline of notable events.',
        tags: ['logs', 'incidents', 'summarisation'],
        examples: ['Summarise the api-gateway logs from 02:00 to 02:30 UTC'],
      },
      {
        id: 'draft-fix',
        name: 'Draft a fix',
        description: 'Proposes a patch with a test for a reproduced failure, for human review.',
        tags: ['code', 'patches', 'review'],
        examples: ['Draft a fix for the null check in parser.ts'],
        outputModes: ['text/x-diff', 'text/markdown'],
      },
    ],
    supportedInterfaces: [
      { url: `${RUNTIME_URL}/a2a/v1`, protocolBinding: 'JSONRPC' },
      { url: `${RUNTIME_URL}/a2a/grpc`, protocolBinding: 'GRPC' },
      { url: `${RUNTIME_URL}/a2a/rest`, protocolBinding: 'HTTP+JSON' },
    ],
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description: 'OAuth 2.0 access token issued by the team identity provider',
      },
    },
    security: [{ bearer: [] }],
    supportsAuthenticatedExtendedCard: false,
  };
}

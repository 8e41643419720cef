import { WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import { createControlClient, type WatchEvent } from '../client/control-client.js';
import {
  CLIENT_FLAGS_HELP,
  CLIENT_OPTIONS,
  UsageError,
  controlToken,
  describeFailure,
  out,
  parse,
  connectOptions,
  untilSignal,
  when,
} from './common.js';

export const WATCH_HELP = `Usage: vigil watch [--workspace ID]... [--after-seq N] [--snapshot] [--json]

Follows status transitions as they commit, in seq order. Reconnects by itself
after a disconnect or a server restart, resuming after the last seq it saw,
so nothing is lost or repeated. Stops on Ctrl-C / SIGTERM.

Flags:
  --workspace ID       only this workspace (repeatable; default all)
  --after-seq N        start after transition N (default: at the current head)
  --snapshot           print the current state of every workspace first
                       (only when starting at the head)

--json prints one JSON object per line, in the proto JSON mapping of
WatchStatusResponse: {"transition":{...}}, {"snapshot":{...}},
{"snapshotEnd":{...}} or {"progress":{"seq":N}}.

${CLIENT_FLAGS_HELP}`;

export async function watchCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    workspace: { type: 'string', multiple: true },
    'after-seq': { type: 'string' },
    snapshot: { type: 'boolean' },
  });
  if (values.help) {
    out(WATCH_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError('vigil watch takes no arguments');
  const afterText = values['after-seq'] ?? '0';
  if (!/^\d+$/.test(afterText))
    throw new UsageError(`--after-seq: "${afterText}" is not a non-negative integer`);
  const client = createControlClient(
    connectOptions(values, env, controlToken(values['data-dir'], env)),
  );
  const stop = untilSignal();
  const json = values.json ?? false;
  try {
    for await (const event of client.watchStatus({
      workspaceIds: values.workspace ?? [],
      afterSeq: Number(afterText),
      includeSnapshot: values.snapshot ?? false,
      signal: stop.signal,
      onReconnect: (error, attempt, delayMs) => {
        process.stderr.write(
          `vigil watch: ${describeFailure(error)}; reconnecting in ${delayMs} ms (attempt ${attempt})\n`,
        );
      },
    })) {
      if (json) out(JSON.stringify(WatchStatusResponse.toJSON({ event })));
      else printEvent(event);
    }
    return 0;
  } finally {
    client.close();
  }
}

function printEvent(event: WatchEvent): void {
  switch (event.$case) {
    case 'transition': {
      const t = event.value;
      const detail = t.detail === '' ? '' : `  ${t.detail}`;
      out(
        `${String(t.seq).padStart(6)}  ${when(t.at)}  ${t.workspaceId}  ${t.fromStatusName} -> ${t.toStatusName}  ${t.reasonName}${detail}`,
      );
      return;
    }
    case 'snapshot':
      out(`snapshot  ${event.value.id}  ${event.value.statusName}`);
      return;
    case 'snapshotEnd':
      out(
        `-- snapshot ends at seq ${event.value.seq}${event.value.reset ? ' (reset: history before it is gone)' : ''}`,
      );
      return;
    case 'progress':
      return;
  }
}

import { TransitionReason, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';

type Unprefixed<Name, Prefix extends string> = Name extends `${Prefix}${infer Rest}` ? Rest : Name;

/** A workspace status by name, as the proto spells it without its prefix: `'ONLINE'`, `'DEGRADED'`, … */
export type StatusName = Unprefixed<keyof typeof WorkspaceStatus, 'WORKSPACE_STATUS_'>;

/** A transition reason by name, without its prefix: `'REGISTERED'`, `'RECOVERED'`, … */
export type ReasonName = Unprefixed<keyof typeof TransitionReason, 'TRANSITION_REASON_'>;

/**
 * The name of a status (`WorkspaceStatus.WORKSPACE_STATUS_ONLINE` → `'ONLINE'`).
 * A value this SDK does not know (from a newer server) is `'UNRECOGNIZED'`;
 * absent is `'UNSPECIFIED'`.
 */
export function statusName(status: WorkspaceStatus | undefined): StatusName {
  return nameOf(WorkspaceStatus, status ?? 0, 'WORKSPACE_STATUS_') as StatusName;
}

/** The name of a transition reason (`TRANSITION_REASON_RECOVERED` → `'RECOVERED'`); unknown values are `'UNRECOGNIZED'`. */
export function reasonName(reason: TransitionReason | undefined): ReasonName {
  return nameOf(TransitionReason, reason ?? 0, 'TRANSITION_REASON_') as ReasonName;
}

/** A numeric TypeScript enum's member name for `value`, prefix removed. */
function nameOf(enumObject: object, value: number, prefix: string): string {
  // A numeric enum maps each value back to its member name; -1 is UNRECOGNIZED.
  const name = (enumObject as Record<number, string | undefined>)[value];
  if (name === undefined || value < 0) return 'UNRECOGNIZED';
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** The one table `npm run bench` prints and writes as JSON. */

export interface Target {
  /** What the target constrains: the ratio to the baseline, or the value itself. */
  readonly on: 'ratio' | 'value';
  readonly op: '>=' | '<=' | '==';
  readonly bound: number;
}

export interface Row {
  /** Stable identifier, e.g. `heartbeat.stream`: what tooling should key on. */
  readonly id: string;
  readonly scenario: string;
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: number;
  readonly ratio?: number;
  /** Absent for informational rows. */
  readonly target?: Target;
  /** true / false against the target; null for informational rows. */
  readonly pass: boolean | null;
  readonly note?: string;
}

export interface RowInput {
  /** The part after the scenario name: `stream` gives the id `heartbeat.stream`. */
  readonly id: string;
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: number;
  readonly target?: Target;
  readonly note?: string;
}

export function row(scenario: string, input: RowInput): Row {
  const ratio =
    input.baseline === undefined || input.baseline === 0 ? undefined : input.value / input.baseline;
  let pass: boolean | null = null;
  if (input.target) {
    const subject = input.target.on === 'ratio' ? ratio : input.value;
    if (subject === undefined || !Number.isFinite(subject)) pass = false;
    else if (input.target.op === '>=') pass = subject >= input.target.bound;
    else if (input.target.op === '<=') pass = subject <= input.target.bound;
    else pass = subject === input.target.bound;
  }
  return {
    id: `${scenario}.${input.id}`,
    scenario,
    metric: input.metric,
    value: input.value,
    unit: input.unit,
    ...(input.baseline === undefined ? {} : { baseline: input.baseline }),
    ...(ratio === undefined ? {} : { ratio }),
    ...(input.target ? { target: input.target } : {}),
    pass,
    ...(input.note === undefined ? {} : { note: input.note }),
  };
}

/** A row for a scenario that could not produce its numbers. */
export function failedRow(scenario: string, error: string): Row {
  return {
    id: `${scenario}.failed`,
    scenario,
    metric: `${scenario}: scenario failed`,
    value: Number.NaN,
    unit: '',
    pass: false,
    note: error,
  };
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  if (abs === 0) return '0';
  return value.toPrecision(2);
}

export function formatTarget(target: Target | undefined): string {
  if (!target) return '-';
  return `${target.on === 'ratio' ? 'ratio' : 'value'} ${target.op} ${formatNumber(target.bound)}`;
}

/** A plain-text table: id, metric, value, baseline, ratio, target, result. */
export function formatTable(rows: readonly Row[]): string {
  const header = ['id', 'metric', 'value', 'baseline', 'ratio', 'target', 'result'];
  const body = rows.map((r) => [
    r.id,
    r.metric,
    `${formatNumber(r.value)}${r.unit === '' ? '' : ` ${r.unit}`}`,
    r.baseline === undefined
      ? '-'
      : `${formatNumber(r.baseline)}${r.unit === '' ? '' : ` ${r.unit}`}`,
    r.ratio === undefined ? '-' : r.ratio.toFixed(2),
    formatTarget(r.target),
    r.pass === null ? 'info' : r.pass ? 'PASS' : 'FAIL',
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...body.map((cells) => (cells[i] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i <= 1 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...body.map(line)].join('\n');
}

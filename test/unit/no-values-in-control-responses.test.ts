import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Type,
  FileDescriptorSetSchema,
  type DescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { expect } from 'chai';

/**
 * Secret values are write-only for control tokens: walks every message a
 * ControlService RPC answers with (from the served descriptor set) and
 * checks that none can carry a secret value or a projection.
 */
describe('ControlService responses (by reflection over the descriptor set)', () => {
  const set = fromBinary(
    FileDescriptorSetSchema,
    readFileSync(join(__dirname, '..', '..', '..', 'gen', 'descriptors', 'vigil.binpb')),
  );
  const messages = new Map<string, DescriptorProto>();
  const collect = (prefix: string, list: readonly DescriptorProto[]) => {
    for (const m of list) {
      const name = `${prefix}.${m.name}`;
      messages.set(name, m);
      collect(name, m.nestedType);
    }
  };
  for (const file of set.file) collect(`.${file.package}`, file.messageType);
  const control = set.file.flatMap((f) => f.service).find((s) => s.name === 'ControlService');

  it('no response message reaches a `value` field, Projection or its env', () => {
    expect(control?.method.map((m) => m.name)).to.include.members([
      'SetWorkspaceSecret',
      'ListWorkspaceSecrets',
      'ExplainProjection',
      'ListAuditEvents',
    ]);
    const offending: string[] = [];
    const seen = new Set<string>();
    const walk = (typeName: string, path: string) => {
      if (seen.has(typeName)) return;
      seen.add(typeName);
      if (typeName === '.vigil.v1.Projection') offending.push(`${path}: Projection`);
      const message = messages.get(typeName);
      if (!message) return;
      for (const field of message.field) {
        const at = `${path}.${field.name}`;
        if (field.name === 'value' && !typeName.endsWith('Entry')) offending.push(at);
        if (field.type === FieldDescriptorProto_Type.MESSAGE) walk(field.typeName, at);
      }
    };
    for (const method of control?.method ?? []) walk(method.outputType, method.name);
    expect(offending).to.deep.equal([]);
    // The walk reached the secret metadata, so it would have seen a value there.
    expect(seen).to.include('.vigil.v1.SecretMetadata');
  });
});

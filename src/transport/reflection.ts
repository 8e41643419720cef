import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

/**
 * Server reflection (v1 and v1alpha) from the FileDescriptorProtos that
 * `buf build` wrote to gen/descriptors/ — the real files with their names,
 * dependencies and comments, so grpcurl and `buf curl` can build a schema
 * from reflection alone. (Descriptors re-synthesised by proto-loader drop the
 * dependency lists and break strict clients.)
 */

const DESCRIPTOR_DIR = join(__dirname, '..', '..', '..', 'gen', 'descriptors');
const DESCRIPTOR_SETS = ['vigil.binpb', 'health.binpb'];

export function addReflection(server: Server): void {
  const files = DESCRIPTOR_SETS.flatMap((name) =>
    splitDescriptorSet(readFileSync(join(DESCRIPTOR_DIR, name))),
  );
  // @grpc/reflection indexes whatever `fileDescriptorProtos` it is handed.
  new ReflectionService({ vigil: { fileDescriptorProtos: files } } as never).addToServer(server);
}

/** The encoded FileDescriptorProtos of a FileDescriptorSet (field 1, repeated). */
function splitDescriptorSet(bytes: Uint8Array): Buffer[] {
  const reader = new BinaryReader(bytes);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited)
      files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType, field);
  }
  return files;
}

import {
  Server,
  ServerCredentials,
  type MethodDefinition,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { identity } from './lib/wire.js';

/**
 * The bare grpc-js baseline: what the same machine does with no application
 * work at all. Generic service definitions with identity serializers:
 * - /bench.Baseline/Echo (unary) returns the request bytes;
 * - /bench.Baseline/EchoStream (bidi stream) answers every message with its
 *   bytes, cut to the first `x-echo-bytes` bytes when the stream's metadata
 *   says so (the bench sets the size of Vigil's HeartbeatStream answers, so
 *   both directions carry what a HeartbeatStream carries); ends when the
 *   client ends;
 * - /bench.Baseline/Subscribe (server stream) sends one hello frame, then
 *   every payload Trigger is given;
 * - /bench.Baseline/Trigger (unary) writes its request bytes to every open
 *   Subscribe stream and returns how many it wrote to.
 * Usage: node dist/bench/baseline-server.js HOST:PORT. Prints one JSON line
 * `{"msg":"listening","address":...}` on stdout once bound; exits on SIGTERM.
 */

function method(
  path: string,
  responseStream: boolean,
  requestStream = false,
): MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

const BASELINE_SERVICE: ServiceDefinition = {
  Echo: method('/bench.Baseline/Echo', false),
  EchoStream: method('/bench.Baseline/EchoStream', true, true),
  Subscribe: method('/bench.Baseline/Subscribe', true),
  Trigger: method('/bench.Baseline/Trigger', false),
};

/** A WatchStatusResponse{progress{seq: 0}}: the same kind of head frame Vigil sends first. */
const HELLO = Buffer.from([0x22, 0x00]);

function main(): void {
  const address = process.argv[2] ?? '127.0.0.1:0';
  const subscribers = new Set<ServerWritableStream<Buffer, Buffer>>();
  const server = new Server();
  server.addService(BASELINE_SERVICE, {
    Echo(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
      callback(null, call.request);
    },
    EchoStream(call: ServerDuplexStream<Buffer, Buffer>) {
      const limit = Number(call.metadata.get('x-echo-bytes')[0] ?? Number.NaN);
      const cut = Number.isInteger(limit) && limit > 0 ? limit : Number.POSITIVE_INFINITY;
      call.on('data', (message: Buffer) => {
        call.write(message.length > cut ? message.subarray(0, cut) : message);
      });
      call.on('end', () => {
        call.end();
      });
      call.on('error', () => {
        // the client went away; nothing to clean up
      });
    },
    Subscribe(call: ServerWritableStream<Buffer, Buffer>) {
      subscribers.add(call);
      const drop = () => {
        subscribers.delete(call);
      };
      call.on('cancelled', drop);
      call.on('error', drop);
      call.on('close', drop);
      call.write(HELLO);
    },
    Trigger(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
      for (const subscriber of subscribers) subscriber.write(call.request);
      const count = Buffer.alloc(4);
      count.writeUInt32BE(subscribers.size);
      callback(null, count);
    },
  });
  server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) => {
    if (error) {
      process.stderr.write(`baseline-server: ${error.message}\n`);
      process.exit(1);
    }
    const host = address.replace(/:\d+$/, '');
    process.stdout.write(`${JSON.stringify({ msg: 'listening', address: `${host}:${port}` })}\n`);
  });
  const stop = () => {
    for (const subscriber of subscribers) subscriber.end();
    server.forceShutdown();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The driver's IPC channel closing means the driver is gone: do not outlive it.
  process.on('disconnect', stop);
}

main();

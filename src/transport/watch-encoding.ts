import { ControlServiceService, WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import type { Transition } from '../domain/model.js';
import type { WatchEvent } from '../watch/watch-session.js';
import { watchEventToProto } from './convert.js';

/**
 * Encode once, send to every watcher. A committed transition is the same
 * object for every stream reading it from the hub's tail, so its encoded
 * WatchStatusResponse is cached against it and each stream writes the same
 * bytes. The service definition below lets those bytes through unchanged.
 */

const encodedTransitions = new WeakMap<Transition, Buffer>();

/** The wire bytes of one watch event, shared by all streams for a transition. */
export function encodeWatchEvent(event: WatchEvent): Buffer {
  if (event.type !== 'transition') return encode(event);
  let bytes = encodedTransitions.get(event.transition);
  if (!bytes) {
    bytes = encode(event);
    encodedTransitions.set(event.transition, bytes);
  }
  return bytes;
}

function encode(event: WatchEvent): Buffer {
  return Buffer.from(WatchStatusResponse.encode(watchEventToProto(event)).finish());
}

/** ControlService whose WatchStatus serializer passes pre-encoded bytes through. */
export const controlServiceDefinition = {
  ...ControlServiceService,
  watchStatus: {
    ...ControlServiceService.watchStatus,
    responseSerialize: (value: WatchStatusResponse | Buffer): Buffer =>
      Buffer.isBuffer(value) ? value : ControlServiceService.watchStatus.responseSerialize(value),
  },
} as const;

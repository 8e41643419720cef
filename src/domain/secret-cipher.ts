/**
 * The port through which the projection use-cases encrypt and decrypt
 * secrets. Implemented by src/crypto (node:crypto, AES-256-GCM over a
 * keyring file); a KMS-backed key provider would implement the same small
 * interface. Nothing behind it ever falls back to plaintext.
 */

/** A workspace's data key (DEK) as stored: wrapped under one key-encryption key (KEK) of the keyring. */
export interface WrappedKey {
  readonly kekId: string;
  readonly wrapped: Uint8Array;
}

/** An unwrapped workspace data key, bound to its workspace. */
export interface WorkspaceKey {
  /** Encrypts `value` for the secret `name` of this workspace (AAD binds both). */
  seal(name: string, value: string): Uint8Array;
  /**
   * Decrypts a sealed secret. Throws SECRET_UNREADABLE (DATA_LOSS) naming the
   * secret when the ciphertext was damaged or belongs to another workspace or name.
   */
  open(name: string, sealed: Uint8Array): string;
  /** A keyed fingerprint of a value (16 hex): equal values compare equal, nothing more is told. */
  fingerprint(value: string): string;
  /** The keyed digest (32 hex) of a canonical environment. */
  digest(canonical: string): string;
}

export interface SecretCipher {
  /** The id of the KEK new data keys are wrapped under. */
  readonly activeKeyId: string;
  /** Whether the keyring holds this KEK. */
  hasKey(kekId: string): boolean;
  /** A new random data key for a workspace, and its wrapped form to store. */
  createWorkspaceKey(workspaceId: string): {
    readonly key: WorkspaceKey;
    readonly wrapped: WrappedKey;
  };
  /** Unwraps a stored data key. Throws SECRET_UNREADABLE when it cannot be. */
  openWorkspaceKey(workspaceId: string, wrapped: WrappedKey): WorkspaceKey;
  /** The same data key, wrapped under the active KEK. */
  rewrap(workspaceId: string, wrapped: WrappedKey): WrappedKey;
  /**
   * A keyed check value (32 hex) of every KEK in the keyring, by id: equal for
   * equal keys and telling nothing of the key, so processes sharing one store
   * can prove they hold the same keyring.
   */
  keyChecks(): ReadonlyMap<string, string>;
}

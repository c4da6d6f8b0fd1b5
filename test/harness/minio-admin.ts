// The few MinIO admin calls a test needs to set up a user as compose's minio-setup does (`mc admin
// policy create`, `mc admin user add`, `mc admin policy attach`), made over MinIO's admin REST API
// (/minio/admin/v3) with the root credentials, so the tests need no `mc` binary.
//
// The API signs requests like S3 (the minio client's SigV4 does it), and some bodies are
// encrypted with the caller's secret key as madmin-go's EncryptData does: salt (32 bytes) | the
// algorithm's id (1) | nonce (8) | a sio-go stream. Here the algorithm is PBKDF2-SHA256 (8192
// rounds) and AES-256-GCM, id 2, the one madmin uses in FIPS mode; MinIO decrypts all three.
// A body up to 16 KiB is one sio-go fragment: sealed with nonce || uint32 LE 1, and associated
// data 0x80 || the GCM tag of sealing nothing with nonce || uint32 LE 0.
import { createCipheriv, pbkdf2Sync, randomBytes } from "node:crypto";
import type { Client } from "minio";

const PBKDF2_ROUNDS = 8192;
const PBKDF2_AES_GCM = 2;
const SIO_BUF_SIZE = 16 * 1024;

function gcmSeal(key: Buffer, nonce: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** madmin.EncryptData(password, data) for data of at most 16 KiB. */
function encryptData(password: string, data: Buffer): Buffer {
  if (data.length > SIO_BUF_SIZE) throw new Error("minio-admin: bodies over 16 KiB would need more than one sio fragment");
  const salt = randomBytes(32);
  const key = pbkdf2Sync(password, salt, PBKDF2_ROUNDS, 32, "sha256");
  const nonce = randomBytes(8);
  const nonceWith = (seq: number) => {
    const n = Buffer.alloc(12);
    nonce.copy(n);
    n.writeUInt32LE(seq, 8);
    return n;
  };
  const headerTag = gcmSeal(key, nonceWith(0), Buffer.alloc(0), Buffer.alloc(0));
  const aad = Buffer.concat([Buffer.from([0x80]), headerTag]);
  return Buffer.concat([salt, Buffer.from([PBKDF2_AES_GCM]), nonce, gcmSeal(key, nonceWith(1), data, aad)]);
}

export interface MinioAdmin {
  /** Creates or replaces a canned policy (`mc admin policy create`). */
  addPolicy(name: string, policyJson: string): Promise<void>;
  removePolicy(name: string): Promise<void>;
  /** Creates a user or sets its password (`mc admin user add`). */
  addUser(accessKey: string, secretKey: string): Promise<void>;
  removeUser(accessKey: string): Promise<void>;
  /** `mc admin policy attach <policy> --user <user>`. */
  attachPolicy(policy: string, user: string): Promise<void>;
}

/**
 * Admin calls through `root`, a minio client holding the root credentials (its region must be
 * set, or it would ask the "minio" bucket's location first).
 */
export function minioAdmin(root: Client, rootSecretKey: string): MinioAdmin {
  const call = async (method: string, api: string, query: Record<string, string>, body?: Buffer): Promise<void> => {
    // Every status is read here: the client would parse an admin error (JSON) as S3's XML.
    const statuses = Array.from({ length: 500 }, (_, i) => 100 + i);
    const res = await root.makeRequestAsync(
      {
        method,
        bucketName: "minio",
        objectName: `admin/v3/${api}`,
        query: new URLSearchParams(query).toString(),
        // Some calls refuse any other type, so that a body is never read as form data.
        headers: { "Content-Type": "application/octet-stream" },
      },
      body ?? "",
      statuses,
    );
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const status = res.statusCode ?? 0;
    if (status >= 300) throw new Error(`minio admin ${api}: HTTP ${status} ${Buffer.concat(chunks).toString("utf8")}`);
  };
  const encrypted = (value: unknown) => encryptData(rootSecretKey, Buffer.from(JSON.stringify(value)));
  return {
    addPolicy: (name, policyJson) => call("PUT", "add-canned-policy", { name }, Buffer.from(policyJson)),
    removePolicy: (name) => call("DELETE", "remove-canned-policy", { name }),
    addUser: (accessKey, secretKey) => call("PUT", "add-user", { accessKey }, encrypted({ secretKey, status: "enabled" })),
    removeUser: (accessKey) => call("DELETE", "remove-user", { accessKey }),
    attachPolicy: (policy, user) => call("POST", "idp/builtin/policy/attach", {}, encrypted({ policies: [policy], user })),
  };
}

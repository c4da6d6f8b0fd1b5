import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { binPath, cassandraLibDir } from "../config/tools.ts";
import {
  cassandraJvmArgsPath,
  isCached,
  javaMajorVersion,
  obtain,
  ObtainError,
  parseTargets,
  parseTools,
  pinOf,
  stampPath,
} from "./obtain.ts";

let env: NodeJS.ProcessEnv;
let cache: string;

beforeEach(async () => {
  cache = await fs.mkdtemp(path.join(os.tmpdir(), "natter-obtain-test-"));
  env = { NATTER_CACHE_DIR: cache };
});
afterEach(async () => {
  await fs.rm(cache, { recursive: true, force: true });
});

async function fakeBinary(tool: "nats-server" | "nats" | "minio", stamp: string | undefined): Promise<void> {
  await fs.mkdir(path.dirname(binPath(tool, env)), { recursive: true });
  await fs.writeFile(binPath(tool, env), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  if (stamp !== undefined) await fs.writeFile(stampPath(tool, env), `${stamp}\n`);
}

describe("isCached", () => {
  test("a binary with the pinned stamp is cached", async () => {
    await fakeBinary("nats-server", pinOf("nats-server"));
    expect(await isCached("nats-server", env)).toBe(true);
  });

  test("no stamp (an interrupted install) or another version's stamp is not cached", async () => {
    await fakeBinary("nats-server", undefined);
    expect(await isCached("nats-server", env)).toBe(false);
    await fakeBinary("nats-server", "github.com/nats-io/nats-server/v2@v2.9.10");
    expect(await isCached("nats-server", env)).toBe(false);
  });

  test("a stamp without its binary is not cached", async () => {
    await fs.mkdir(path.dirname(stampPath("minio", env)), { recursive: true });
    await fs.writeFile(stampPath("minio", env), pinOf("minio"));
    expect(await isCached("minio", env)).toBe(false);
  });

  test("cassandra needs its stamp, jvm17.args and the jamm agent jar", async () => {
    await fs.mkdir(cassandraLibDir(env), { recursive: true });
    await fs.writeFile(stampPath("cassandra", env), pinOf("cassandra"));
    await fs.writeFile(cassandraJvmArgsPath(env), "-XX:+UseG1GC\n");
    expect(await isCached("cassandra", env)).toBe(false);
    await fs.writeFile(path.join(cassandraLibDir(env), "jamm-0.4.0.jar"), "");
    expect(await isCached("cassandra", env)).toBe(true);
  });
});

test("obtain() of a cached tool only reports it", async () => {
  await fakeBinary("nats", pinOf("nats"));
  const lines: string[] = [];
  expect(await obtain("nats", { env, log: (l) => lines.push(l) })).toBe("cached");
  expect(lines).toEqual([`cached (${binPath("nats", env)})`]);
});

describe("parseTools", () => {
  test("nothing or `all` means every tool, in a fixed order, once", () => {
    expect(parseTools([])).toEqual(["nats-server", "nats", "minio", "cassandra"]);
    expect(parseTools(["cassandra", "all"])).toEqual(["nats-server", "nats", "minio", "cassandra"]);
    expect(parseTools(["minio", "nats-server", "minio"])).toEqual(["nats-server", "minio"]);
  });

  test("an unknown name is an error naming the choices", () => {
    expect(() => parseTools(["nats-sever"])).toThrow(ObtainError);
    expect(() => parseTools(["nats-sever"])).toThrow(/nats-server, nats, minio, cassandra/);
  });
});

describe("parseTargets", () => {
  test("`all` and nothing include chromium (an apt package); naming it alone obtains nothing else", () => {
    const every = { tools: ["nats-server", "nats", "minio", "cassandra"], system: ["chromium"] };
    expect(parseTargets([])).toEqual(every);
    expect(parseTargets(["all"])).toEqual(every);
    expect(parseTargets(["chromium"])).toEqual({ tools: [], system: ["chromium"] });
    expect(parseTargets(["nats-server"])).toEqual({ tools: ["nats-server"], system: [] });
    expect(() => parseTargets(["chrome"])).toThrow(/cassandra, chromium/);
  });
});

test("javaMajorVersion reads old and new version strings", () => {
  expect(javaMajorVersion('openjdk version "17.0.15" 2025-04-15')).toBe(17);
  expect(javaMajorVersion('java version "1.8.0_392"')).toBe(8);
  expect(javaMajorVersion('openjdk version "21" 2023-09-19')).toBe(21);
  expect(javaMajorVersion("nonsense")).toBeUndefined();
});

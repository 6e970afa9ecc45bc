// ETags and conditional writes (If-Match, If-None-Match: *) against a real agent.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { NotFound, PreconditionFailed, SpineClient } from "../src/index.js";
import { Agent } from "./agent.js";

function lost(currentVersion: number | null) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof PreconditionFailed, String(error));
    assert.equal(error.status, 412);
    assert.equal(error.currentVersion, currentVersion);
    return true;
  };
}

describe("versions and conditional writes", () => {
  let agent: Agent;
  let client: SpineClient;

  before(async () => {
    agent = await new Agent().start();
    client = agent.client();
  });
  after(async () => {
    await client?.close();
    await agent?.destroy();
  });

  it("getVersioned gives the value and the version the put returned", async () => {
    const stored = await client.put("tasks", "v1", { state: "queued" });
    const read = await client.getVersioned("tasks", "v1");
    assert.deepEqual(read.value, { state: "queued" });
    assert.ok(Number.isSafeInteger(read.version) && read.version > 0);
    assert.equal(stored.version, read.version);
    await assert.rejects(client.getVersioned("tasks", "none"), NotFound);
  });

  it("every write moves the version strictly forward", async () => {
    let last = 0;
    for (let i = 0; i < 20; i++) {
      await client.put("tasks", "clock", i);
      const { version } = await client.getVersioned("tasks", "clock");
      assert.ok(version > last, `${version} after ${last}`);
      last = version;
    }
  });

  it("putIfMatch writes at the current version and refuses a stale one", async () => {
    await client.put("tasks", "m", { n: 1 });
    const first = await client.getVersioned("tasks", "m");
    await client.putIfMatch("tasks", "m", { n: 2 }, first.version);
    const second = await client.getVersioned("tasks", "m");
    assert.deepEqual(second.value, { n: 2 });
    assert.ok(second.version > first.version);
    await assert.rejects(client.putIfMatch("tasks", "m", { n: 3 }, first.version), lost(second.version));
    assert.deepEqual(await client.get("tasks", "m"), { n: 2 }, "nothing written on 412");
  });

  it("putIfMatch on a missing record fails with currentVersion null", async () => {
    await assert.rejects(client.putIfMatch("tasks", "ghost", 1, 12345), lost(null));
    assert.equal(await client.find("tasks", "ghost"), undefined);
  });

  it("putIfAbsent creates once, then reports the existing version", async () => {
    await client.putIfAbsent("agents", "only-once", { owner: "a" });
    const { version } = await client.getVersioned("agents", "only-once");
    await assert.rejects(client.putIfAbsent("agents", "only-once", { owner: "b" }), lost(version));
    assert.deepEqual(await client.get("agents", "only-once"), { owner: "a" });
  });

  it("deleteIfMatch deletes at the current version only", async () => {
    await client.put("subscriptions", "d", 1);
    const old = await client.getVersioned("subscriptions", "d");
    await client.put("subscriptions", "d", 2);
    const now = await client.getVersioned("subscriptions", "d");
    await assert.rejects(client.deleteIfMatch("subscriptions", "d", old.version), lost(now.version));
    assert.equal(await client.get("subscriptions", "d"), 2);
    await client.deleteIfMatch("subscriptions", "d", now.version);
    assert.equal(await client.find("subscriptions", "d"), undefined);
    await assert.rejects(client.deleteIfMatch("subscriptions", "d", now.version), lost(null));
  });

  it("refuses a version that is not an ETag before sending", async () => {
    await assert.rejects(client.putIfMatch("tasks", "m", 1, -1), TypeError);
    await assert.rejects(client.putIfMatch("tasks", "m", 1, 1.5), TypeError);
    await assert.rejects(client.put("tasks", "m", 1, { ifMatch: 1, ifAbsent: true }), TypeError);
  });

  it("of many concurrent claims of one task, exactly one wins", async () => {
    await client.put("tasks", "job-1", { state: "queued", owner: null });
    const { version } = await client.getVersioned("tasks", "job-1");
    const workers = Array.from({ length: 8 }, () => agent.client());
    try {
      const results = await Promise.allSettled(
        workers.map((worker, i) =>
          worker.putIfMatch("tasks", "job-1", { state: "claimed", owner: `w${i}` }, version),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      const refused = results.filter(
        (r) => r.status === "rejected" && r.reason instanceof PreconditionFailed,
      );
      assert.equal(won.length, 1);
      assert.equal(refused.length, 7);
      const winner = results.findIndex((r) => r.status === "fulfilled");
      assert.deepEqual(await client.get("tasks", "job-1"), { state: "claimed", owner: `w${winner}` });
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
  });

  it("4 clients incrementing one counter with If-Match retry loops lose no update", async () => {
    await client.put("stats", "counter", 0, { class: "critical" });
    const workers = Array.from({ length: 4 }, () => agent.client());
    const perWorker = 50;
    try {
      await Promise.all(
        workers.map(async (worker) => {
          for (let done = 0; done < perWorker; ) {
            const { value, version } = await worker.getVersioned<number>("stats", "counter");
            try {
              await worker.putIfMatch("stats", "counter", value + 1, version, { class: "critical" });
              done++;
            } catch (error) {
              if (!(error instanceof PreconditionFailed)) throw error; // lost: read again
            }
          }
        }),
      );
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
    assert.equal(await client.get("stats", "counter"), 4 * perWorker);
  });
});

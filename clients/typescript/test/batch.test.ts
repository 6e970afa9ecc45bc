// Bulk reads, bulk writes, transactions and TTLs against a real agent.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { BadRequest, PreconditionFailed, SpineClient } from "../src/index.js";
import type { TransactionOp, WriteOp } from "../src/index.js";
import { Agent } from "./agent.js";

const MAX_OPS = 10;

describe("bulk reads, bulk writes, transactions and TTL", () => {
  let agent: Agent;
  let client: SpineClient;

  before(async () => {
    agent = await new Agent({ api: { max_batch_ops: MAX_OPS } }).start();
    client = agent.client();
  });
  after(async () => {
    await client?.close();
    await agent?.destroy();
  });

  /** The state of some records: value and version, or undefined when absent. */
  async function snapshot(names: [string, string][]): Promise<unknown[]> {
    const read = await client.getMany(names.map(([collection, key]) => ({ collection, key })));
    return read.records.map((r) => (r.found ? [r.value, r.version] : undefined));
  }

  it("getMany reads several collections in the order asked; missing keys are reported", async () => {
    const a = await client.put("agents", "bm-a", { name: "planner" });
    const t = await client.put("tasks", "bm-t", [1, 2]);
    const read = await client.getMany<unknown>([
      { collection: "tasks", key: "bm-t" },
      { collection: "agents", key: "bm-none" },
      { collection: "agents", key: "bm-a" },
      { collection: "nowhere", key: "x" },
    ]);
    assert.equal(read.missing, 2);
    assert.deepEqual(read.records, [
      { collection: "tasks", key: "bm-t", found: true, version: t.version, value: [1, 2] },
      { collection: "agents", key: "bm-none", found: false },
      { collection: "agents", key: "bm-a", found: true, version: a.version, value: { name: "planner" } },
      { collection: "nowhere", key: "x", found: false },
    ]);
  });

  it("bulkWrite decides each operation on its own and returns per-op results", async () => {
    const old = await client.put("tasks", "bw-1", { n: 1 });
    await client.put("tasks", "bw-1", { n: 2 });
    const now = await client.getVersioned("tasks", "bw-1");
    await client.put("subscriptions", "bw-gone", 1);
    const result = await client.bulkWrite([
      { op: "put", collection: "tasks", key: "bw-2", value: { n: 3 } },
      { op: "put", collection: "tasks", key: "bw-1", value: { n: 9 }, ifMatch: old.version },
      { op: "delete", collection: "subscriptions", key: "bw-gone" },
      { op: "delete", collection: "subscriptions", key: "bw-never" },
      { op: "put", collection: "stats", key: "bw-s", value: 5, ifAbsent: true },
    ]);
    assert.equal(result.ok, false);
    assert.equal(result.failed, 1);
    assert.deepEqual(
      result.results.map((r) => [r.op, r.collection, r.key, r.status]),
      [
        ["put", "tasks", "bw-2", 200],
        ["put", "tasks", "bw-1", 412],
        ["delete", "subscriptions", "bw-gone", 200],
        ["delete", "subscriptions", "bw-never", 404],
        ["put", "stats", "bw-s", 200],
      ],
    );
    assert.equal(result.results[1]?.currentVersion, now.version);
    assert.equal(result.results[2]?.version, null);
    assert.equal("currentVersion" in (result.results[0] ?? {}), false);
    // The failed one was not written; the others were, at the versions reported.
    assert.deepEqual(await client.getVersioned("tasks", "bw-1"), now);
    const two = await client.getVersioned("tasks", "bw-2");
    assert.deepEqual(two, { value: { n: 3 }, version: result.results[0]?.version });
    assert.equal(await client.find("subscriptions", "bw-gone"), undefined);
    assert.equal(await client.get("stats", "bw-s"), 5);
  });

  it("a transaction applies puts, deletes and checks all together", async () => {
    const task = await client.put("tasks", "tx-task", { state: "queued", owner: null });
    const agentRecord = await client.put("agents", "tx-agent", { name: "planner" });
    await client.put("cache", "tx-old", "stale");
    const result = await client.transaction([
      { op: "put", collection: "tasks", key: "tx-task", value: { state: "claimed", owner: "tx-agent" }, ifMatch: task.version },
      { op: "put", collection: "stats", key: "tx-agent", value: { claims: 1 }, ifAbsent: true },
      { op: "delete", collection: "cache", key: "tx-old" },
      { op: "check", collection: "agents", key: "tx-agent", ifMatch: agentRecord.version },
      { op: "check", collection: "agents", key: "tx-nobody", ifAbsent: true },
    ]);
    assert.equal(result.ok, true);
    assert.equal(result.failed, 0);
    assert.deepEqual(result.results.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.deepEqual(await client.get("tasks", "tx-task"), { state: "claimed", owner: "tx-agent" });
    assert.deepEqual(await client.get("stats", "tx-agent"), { claims: 1 });
    assert.equal(await client.find("cache", "tx-old"), undefined);
  });

  it("a failed condition: 412 naming the first failing record, and nothing changes", async () => {
    const a = await client.put("tasks", "tf-a", "a0");
    await client.put("tasks", "tf-b", "b0");
    const b = await client.put("tasks", "tf-b", "b1"); // a stale version for tf-b is b - 1
    await client.put("cache", "tf-c", "c0");
    const names: [string, string][] = [
      ["tasks", "tf-a"],
      ["tasks", "tf-b"],
      ["cache", "tf-c"],
      ["stats", "tf-new"],
      ["agents", "tf-exists"],
    ];
    await client.put("agents", "tf-exists", 1);
    const before = await snapshot(names);
    const ops: TransactionOp[] = [
      { op: "put", collection: "tasks", key: "tf-a", value: "a1", ifMatch: a.version },
      { op: "delete", collection: "cache", key: "tf-c" },
      { op: "put", collection: "stats", key: "tf-new", value: 1, ttl: 60 },
      { op: "put", collection: "tasks", key: "tf-b", value: "b2", ifMatch: b.version - 1 },
      { op: "check", collection: "agents", key: "tf-exists", ifAbsent: true }, // fails too, later
    ];
    await assert.rejects(client.transaction(ops), (error: unknown) => {
      assert.ok(error instanceof PreconditionFailed, String(error));
      assert.equal(error.status, 412);
      assert.equal(error.index, 3);
      assert.equal(error.collection, "tasks");
      assert.equal(error.key, "tf-b");
      assert.equal(error.currentVersion, b.version);
      assert.match(error.message, /tf-b/);
      return true;
    });
    assert.deepEqual(await snapshot(names), before, "nothing written");
    // Only the check failing: it is the one named, with the version it found.
    const exists = await client.getVersioned("agents", "tf-exists");
    await assert.rejects(client.transaction([ops[0] as TransactionOp, ops[4] as TransactionOp]), (error: unknown) => {
      assert.ok(error instanceof PreconditionFailed);
      assert.deepEqual([error.index, error.collection, error.key], [1, "agents", "tf-exists"]);
      assert.equal(error.currentVersion, exists.version);
      return true;
    });
    // An If-Match on a record that is absent names it with currentVersion null.
    await assert.rejects(
      client.transaction([{ op: "delete", collection: "tasks", key: "tf-ghost", ifMatch: 5 }]),
      (error: unknown) => {
        assert.ok(error instanceof PreconditionFailed);
        assert.deepEqual([error.index, error.key, error.currentVersion], [0, "tf-ghost", null]);
        return true;
      },
    );
    assert.deepEqual(await snapshot(names), before, "still nothing written");
  });

  it("a put with a ttl is gone from every read once it passes", async () => {
    await client.put("sessions", "ttl-single", { user: 7 }, { ttl: 1 });
    await client.bulkWrite([{ op: "put", collection: "cache", key: "ttl-bulk", value: 1, ttl: 1 }]);
    await client.transaction([{ op: "put", collection: "stats", key: "ttl-tx", value: 2, ttl: 1 }]);
    await client.put("sessions", "ttl-long", "stays", { ttl: 3600 });
    const names = [
      { collection: "sessions", key: "ttl-single" },
      { collection: "cache", key: "ttl-bulk" },
      { collection: "stats", key: "ttl-tx" },
      { collection: "sessions", key: "ttl-long" },
    ];
    assert.equal((await client.getMany(names)).missing, 0, "all there before the TTL passes");
    await new Promise((r) => setTimeout(r, 1_100));
    let read = await client.getMany(names);
    for (let waited = 0; read.missing < 3 && waited < 3_000; waited += 100) {
      await new Promise((r) => setTimeout(r, 100)); // a TTL is whole seconds of wall clock
      read = await client.getMany(names);
    }
    assert.deepEqual(read.records.map((r) => r.found), [false, false, false, true]);
    assert.equal(await client.find("sessions", "ttl-single"), undefined);
    assert.deepEqual(Object.keys((await client.list("sessions", { prefix: "ttl-" })).records), ["ttl-long"]);
    // An expired record is absent for conditions too: ifAbsent creates it again.
    await client.putIfAbsent("sessions", "ttl-single", { user: 8 });
    assert.deepEqual(await client.get("sessions", "ttl-single"), { user: 8 });
  });

  it("a ttl on a critical record, or out of range, is BadRequest and writes nothing", async () => {
    const badRequest = (pattern: RegExp) => (error: unknown): boolean => {
      assert.ok(error instanceof BadRequest, String(error));
      assert.equal(error.status, 400);
      assert.match(error.message, pattern);
      return true;
    };
    await assert.rejects(client.put("agents", "ttl-crit", 1, { ttl: 60 }), badRequest(/critical/));
    await assert.rejects(client.put("sessions", "ttl-zero", 1, { ttl: 0 }), badRequest(/ttl/));
    await assert.rejects(client.put("sessions", "ttl-frac", 1, { ttl: 1.5 }), badRequest(/ttl/));
    await assert.rejects(
      client.transaction([
        { op: "put", collection: "sessions", key: "ttl-ok", value: 1 },
        { op: "put", collection: "tasks", key: "ttl-crit", value: 1, ttl: 60 },
      ]),
      badRequest(/critical/),
    );
    await assert.rejects(
      client.bulkWrite([{ op: "put", collection: "cache", key: "ttl-year", value: 1, ttl: 366 * 86400 }]),
      badRequest(/operations\[0\]\.ttl/),
    );
    const read = await client.getMany([
      { collection: "agents", key: "ttl-crit" },
      { collection: "sessions", key: "ttl-zero" },
      { collection: "sessions", key: "ttl-frac" },
      { collection: "sessions", key: "ttl-ok" },
      { collection: "tasks", key: "ttl-crit" },
      { collection: "cache", key: "ttl-year" },
    ]);
    assert.equal(read.missing, read.records.length, "nothing written");
  });

  describe("bad batches are BadRequest, and nothing is written", () => {
    const put = (key: string): WriteOp => ({ op: "put", collection: "tasks", key, value: key });
    const cases: [string, () => Promise<unknown>, number, RegExp][] = [
      ["an empty bulk read", () => client.getMany([]), 400, /records must not be empty/],
      ["an empty bulk write", () => client.bulkWrite([]), 400, /operations must not be empty/],
      ["an empty transaction", () => client.transaction([]), 400, /operations must not be empty/],
      [
        "a record named twice in a transaction",
        () => client.transaction([put("bad-dup"), { op: "delete", collection: "tasks", key: "bad-dup" }]),
        400,
        /operations 0 and 1 both name tasks\/bad-dup/,
      ],
      [
        "a record named twice in a bulk read",
        () => client.getMany([{ collection: "a", key: "k" }, { collection: "a", key: "k" }]),
        400,
        /records 0 and 1/,
      ],
      [
        "a check in a bulk write",
        () => client.bulkWrite([put("bad-check"), { op: "check", collection: "tasks", key: "x", ifAbsent: true } as unknown as WriteOp]),
        400,
        /operations\[1\]\.op 'check' must be put or delete/,
      ],
      [
        "a check without a condition",
        () => client.transaction([put("bad-cond"), { op: "check", collection: "tasks", key: "x" }]),
        400,
        /operations\[1\]: a check needs if_match or if_absent/,
      ],
      [
        "a bad collection name",
        () => client.bulkWrite([put("bad-name"), { op: "put", collection: "../etc", key: "k", value: 1 }]),
        400,
        /operations\[1\]\.collection/,
      ],
      [
        "a bad class",
        () => client.transaction([put("bad-class"), { op: "put", collection: "tasks", key: "k", value: 1, class: "forever" as "cache" }]),
        400,
        /class/,
      ],
      [
        "more operations than api.max_batch_ops",
        () => client.bulkWrite(Array.from({ length: MAX_OPS + 1 }, (_, i) => put(`bad-many-${i}`))),
        413,
        new RegExp(`holds ${MAX_OPS + 1} items, over api.max_batch_ops \\(${MAX_OPS}\\)`),
      ],
    ];
    for (const [name, call, status, pattern] of cases) {
      it(name, async () => {
        await assert.rejects(call(), (error: unknown) => {
          assert.ok(error instanceof BadRequest, String(error));
          assert.equal(error.status, status);
          assert.match(error.message, pattern);
          return true;
        });
        const listed = await client.list("tasks", { prefix: "bad-" });
        assert.deepEqual(listed.records, {}, "nothing written");
      });
    }
  });

  it("refuses what the agent would refuse before sending: TypeError", async () => {
    const base = { collection: "tasks", key: "te" } as const;
    await assert.rejects(client.transaction([{ op: "put", ...base, value: 1, ifMatch: 1, ifAbsent: true }]), /operations\[0\]: ifMatch and ifAbsent/);
    await assert.rejects(client.bulkWrite([{ op: "delete", ...base, ifMatch: -1 }]), TypeError);
    await assert.rejects(client.bulkWrite([{ op: "put", ...base, value: 1, ifMatch: 2.5 }]), TypeError);
    await assert.rejects(client.bulkWrite([{ op: "put", ...base, value: undefined }]), /operations\[0\]\.value/);
    assert.equal(await client.find("tasks", "te"), undefined);
  });
});

// Every record verb against a real agent over its unix socket.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { BadRequest, NotFound, SpineClient, SpineError } from "../src/index.js";
import { Agent } from "./agent.js";

describe("records over the unix socket", () => {
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

  it("puts, gets and reads back a critical record durably", async () => {
    const value = { name: "planner", status: "active", load: 0.25, tags: ["gpu"], n: null };
    const stored = await client.put("agents", "agent-042", value);
    assert.equal(stored.ok, true);
    assert.equal(stored.class, "critical");
    assert.deepEqual(await client.get("agents", "agent-042"), value);
    // A second, independent client sees it: it is the agent's state, not a client cache.
    const other = agent.client();
    try {
      assert.deepEqual(await other.get("agents", "agent-042"), value);
    } finally {
      await other.close();
    }
  });

  it("keeps every JSON value type, and a class given per put", async () => {
    for (const [key, value] of [
      ["s", "text"],
      ["n", -12.5],
      ["i", 9007199254740991],
      ["b", false],
      ["z", null],
      ["a", [1, [2, { x: "y" }]]],
    ] as const) {
      const stored = await client.put("stats", key, value, { class: "cache" });
      assert.equal(stored.class, "cache");
      assert.deepEqual(await client.get("stats", key), value);
    }
  });

  it("escapes keys whole: spaces, percent, query and hash characters, unicode", async () => {
    const keys = ["with space", "100%", "a?b=c", "x#y", "naïve-ключ-鍵", "a:b@c", "+plus"];
    for (const key of keys) await client.put("names", key, { key });
    for (const key of keys) assert.deepEqual(await client.get("names", key), { key });
    const listed = await client.list("names");
    assert.deepEqual(Object.keys(listed.records).sort(), [...keys].sort());
  });

  it("get of a missing record throws NotFound; find returns undefined", async () => {
    await assert.rejects(client.get("agents", "nobody"), (error: unknown) => {
      assert.ok(error instanceof NotFound);
      assert.ok(error instanceof SpineError);
      assert.equal(error.status, 404);
      assert.match(error.message, /no record agents\/nobody/);
      return true;
    });
    assert.equal(await client.find("agents", "nobody"), undefined);
    await client.put("agents", "found", 7);
    assert.equal(await client.find("agents", "found"), 7);
  });

  it("lists a collection sorted by key, with prefix and limit", async () => {
    for (const key of ["t-3", "t-1", "t-2", "u-1"]) await client.put("tasks", key, { key });
    const all = await client.list("tasks");
    assert.equal(all.collection, "tasks");
    assert.equal(all.truncated, false);
    assert.deepEqual(Object.keys(all.records), ["t-1", "t-2", "t-3", "u-1"]);
    const some = await client.list<{ key: string }>("tasks", { prefix: "t-", limit: 2 });
    assert.deepEqual(Object.keys(some.records), ["t-1", "t-2"]);
    assert.equal(some.records["t-2"]?.key, "t-2");
    assert.equal(some.truncated, true);
  });

  it("deletes a record; deleting it again is NotFound", async () => {
    await client.put("subscriptions", "s1", { topic: "tasks" });
    const deleted = await client.delete("subscriptions", "s1");
    assert.deepEqual(deleted, { ok: true, deleted: "subscriptions/s1" });
    await assert.rejects(client.get("subscriptions", "s1"), NotFound);
    await assert.rejects(client.delete("subscriptions", "s1"), NotFound);
  });

  it("a bad collection name is BadRequest naming it, and nothing is written", async () => {
    await assert.rejects(client.put("bad name!", "k", 1), (error: unknown) => {
      assert.ok(error instanceof BadRequest);
      assert.equal(error.status, 400);
      assert.match(error.message, /collection/);
      return true;
    });
    const status = await client.status();
    assert.equal(status.collections["bad name!"], undefined);
  });

  it("a bad class and a bad limit are BadRequest", async () => {
    await assert.rejects(
      client.put("agents", "k", 1, { class: "forever" as "cache" }),
      (error: unknown) => error instanceof BadRequest && /class/.test(error.message),
    );
    await assert.rejects(
      client.list("agents", { limit: 0 }),
      (error: unknown) => error instanceof BadRequest && /limit/.test(error.message),
    );
  });

  it("a value over max_value_size is BadRequest (413)", async () => {
    const big = "x".repeat(1_100_000);
    await assert.rejects(client.put("stats", "big", big), (error: unknown) => {
      assert.ok(error instanceof BadRequest);
      assert.equal(error.status, 413);
      return true;
    });
    assert.equal(await client.find("stats", "big"), undefined);
  });

  it("refuses a value that is not JSON before sending it", async () => {
    await assert.rejects(client.put("stats", "u", undefined), TypeError);
    await assert.rejects(client.put("stats", "f", () => 1), TypeError);
  });

  it("status and health describe the agent", async () => {
    assert.deepEqual(await client.health(), { status: "ok" });
    const status = await client.status();
    assert.ok(status.records >= 1);
    assert.ok((status.collections["agents"] ?? 0) >= 2);
    assert.equal(typeof status.uptime_s, "number");
    assert.ok("memory" in status.tiers);
  });

  it("runs a tiering pass, a flush and a backup on demand", async () => {
    const report = await client.tier();
    assert.equal(typeof report.seconds, "number");
    const flush = await client.flush();
    assert.ok(flush.files_written >= 0);
    const backup = await client.backup();
    assert.equal(typeof backup.changes, "number");
  });

  it("serves many concurrent calls over its small pool", async () => {
    const many = agent.client({ connections: 4 });
    try {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => many.put("stats", `c${i}`, { i }, { class: "session" })),
      );
      const values = await Promise.all(Array.from({ length: 200 }, (_, i) => many.get("stats", `c${i}`)));
      assert.deepEqual(values, Array.from({ length: 200 }, (_, i) => ({ i })));
    } finally {
      await many.close();
    }
  });
});

// Retries happen only where they are safe: reads after any transport failure, writes only when
// the agent cannot have seen them (no connection, or a 503, which means nothing was written).
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { SpineClient, Unavailable } from "../src/index.js";
import { Agent } from "./agent.js";

const FAST = { retries: 3, minDelayMs: 1, maxDelayMs: 5 };

/**
 * A stand-in for an agent that misbehaves, on a unix socket: it reads each whole request and
 * then either drops the connection without answering (as an agent killed mid-request would) or
 * answers with the next canned status. It counts the requests that reached it. The real agent
 * cannot be made to do this on cue, so this is the one place the tests use a stand-in.
 */
class StandIn {
  readonly dir = mkdtempSync("/tmp/ssk-ts-standin-");
  readonly socketPath = join(this.dir, "standin.sock");
  requests: string[] = [];
  private readonly server: Server;

  constructor(private readonly answers: (number | "drop")[]) {
    this.server = createServer((socket) => this.serve(socket));
  }

  async listen(): Promise<this> {
    this.server.listen(this.socketPath);
    await once(this.server, "listening");
    return this;
  }

  private serve(socket: Socket): void {
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buffered.subarray(0, end).toString();
      const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buffered.length < end + 4 + length) return;
      buffered = buffered.subarray(end + 4 + length);
      this.requests.push(head.split("\r\n")[0] ?? "");
      const answer = this.answers[this.requests.length - 1] ?? 200;
      if (answer === "drop") {
        socket.destroy();
        return;
      }
      const body = answer === 200 ? '{"ok":true}' : '{"error":"over api.max_connections; retry later"}';
      socket.end(
        `HTTP/1.1 ${answer} X\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
          `connection: close\r\n\r\n${body}`,
      );
    });
  }

  async close(): Promise<void> {
    this.server.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe("retries", () => {
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it("a write whose connection broke after sending is not retried (maybeApplied)", async () => {
    const standIn = await new StandIn(["drop", "drop", 200]).listen();
    cleanup.push(() => standIn.close());
    const client = new SpineClient({ socketPath: standIn.socketPath, retry: FAST });
    cleanup.push(() => client.close());
    await assert.rejects(client.put("tasks", "t1", { n: 1 }), (error: unknown) => {
      assert.ok(error instanceof Unavailable);
      assert.equal(error.maybeApplied, true);
      assert.equal(error.status, undefined);
      return true;
    });
    assert.deepEqual(standIn.requests, ["PUT /v1/records/tasks/t1 HTTP/1.1"]);
    await assert.rejects(client.delete("tasks", "t1"), Unavailable);
    assert.equal(standIn.requests.length, 2, "the delete was sent once too");
  });

  it("a read whose connection broke is retried until the budget runs out", async () => {
    const standIn = await new StandIn(["drop", "drop", "drop", "drop", "drop"]).listen();
    cleanup.push(() => standIn.close());
    const client = new SpineClient({ socketPath: standIn.socketPath, retry: FAST });
    cleanup.push(() => client.close());
    await assert.rejects(client.get("tasks", "t1"), (error: unknown) => {
      assert.ok(error instanceof Unavailable);
      assert.equal(error.maybeApplied, false);
      return true;
    });
    assert.equal(standIn.requests.length, FAST.retries + 1);
  });

  it("a read retried after a dropped connection succeeds when the next try is answered", async () => {
    const standIn = await new StandIn(["drop", 200]).listen();
    cleanup.push(() => standIn.close());
    const client = new SpineClient({ socketPath: standIn.socketPath, retry: FAST });
    cleanup.push(() => client.close());
    assert.deepEqual(await client.status(), { ok: true });
    assert.equal(standIn.requests.length, 2);
  });

  it("a 503 (nothing written) is retried for writes and reads alike", async () => {
    const standIn = await new StandIn([503, 503, 200, 503, 200]).listen();
    cleanup.push(() => standIn.close());
    const client = new SpineClient({ socketPath: standIn.socketPath, retry: FAST });
    cleanup.push(() => client.close());
    assert.deepEqual(await client.put("tasks", "t", 1), { ok: true });
    assert.equal(standIn.requests.length, 3);
    assert.deepEqual(await client.get("tasks", "t"), { ok: true });
    assert.equal(standIn.requests.length, 5);
  });

  it("a 503 that persists ends as Unavailable with its status", async () => {
    const standIn = await new StandIn([503, 503, 503, 503, 503]).listen();
    cleanup.push(() => standIn.close());
    const client = new SpineClient({ socketPath: standIn.socketPath, retry: FAST });
    cleanup.push(() => client.close());
    await assert.rejects(client.put("tasks", "t", 1), (error: unknown) => {
      assert.ok(error instanceof Unavailable);
      assert.equal(error.status, 503);
      assert.equal(error.maybeApplied, false);
      assert.match(error.message, /max_connections/);
      return true;
    });
    assert.equal(standIn.requests.length, FAST.retries + 1);
  });

  it("no agent at all: Unavailable, never sent, after the retries", async () => {
    const dir = mkdtempSync("/tmp/ssk-ts-none-");
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const client = new SpineClient({ socketPath: join(dir, "missing.sock"), retry: FAST });
    cleanup.push(() => client.close());
    await assert.rejects(client.put("tasks", "t", 1), (error: unknown) => {
      assert.ok(error instanceof Unavailable);
      assert.equal(error.maybeApplied, false);
      assert.match(error.message, /ENOENT/);
      return true;
    });
  });

  it("a write waits out an agent that is still starting (socket not there yet)", async () => {
    const agent = new Agent();
    cleanup.push(() => agent.destroy());
    const client = agent.client({ retry: { retries: 200, minDelayMs: 20, maxDelayMs: 100 } });
    cleanup.push(() => client.close());
    const put = client.put("agents", "early", { up: true });
    await new Promise((r) => setTimeout(r, 200)); // the put is already failing and retrying
    await agent.start(false);
    await put;
    assert.deepEqual(await client.get("agents", "early"), { up: true });
  });

  it("after a kill -9 (stale socket, connection refused) a read waits for the restart", async () => {
    const agent = await new Agent().start();
    cleanup.push(() => agent.destroy());
    const client = agent.client({ retry: { retries: 200, minDelayMs: 20, maxDelayMs: 100 } });
    cleanup.push(() => client.close());
    await client.put("agents", "durable", { n: 1 }); // critical: on disk when acknowledged
    await agent.kill9();
    const read = client.get("agents", "durable");
    await new Promise((r) => setTimeout(r, 200));
    await agent.start(false);
    assert.deepEqual(await read, { n: 1 });
  });
});

// The TCP option: loopback port plus the bearer token of api.token_file.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { SpineClient, Unauthorized } from "../src/index.js";
import { Agent } from "./agent.js";

describe("loopback TCP with a bearer token", () => {
  let agent: Agent;

  before(async () => {
    agent = await new Agent({ tcp: true }).start();
  });
  after(async () => {
    await agent?.destroy();
  });

  it("reads and writes with the token; the unix socket sees the same record", async () => {
    const tcp = agent.tcpClient();
    const unix = agent.client();
    try {
      assert.equal(tcp.address, `127.0.0.1:${agent.port}`);
      await tcp.put("agents", "over-tcp", { via: "tcp" });
      assert.deepEqual(await unix.get("agents", "over-tcp"), { via: "tcp" });
      assert.deepEqual(await tcp.list("agents"), {
        collection: "agents",
        records: { "over-tcp": { via: "tcp" } },
        truncated: false,
      });
    } finally {
      await tcp.close();
      await unix.close();
    }
  });

  it("a wrong token is Unauthorized and writes nothing", async () => {
    const wrong = agent.tcpClient("not-the-token-at-all-0000");
    const unix = agent.client();
    try {
      await assert.rejects(wrong.put("agents", "intruder", 1), (error: unknown) => {
        assert.ok(error instanceof Unauthorized);
        assert.equal(error.status, 401);
        return true;
      });
      await assert.rejects(wrong.get("agents", "over-tcp"), Unauthorized);
      assert.equal(await unix.find("agents", "intruder"), undefined);
    } finally {
      await wrong.close();
      await unix.close();
    }
  });

  it("needs exactly one of socketPath and tcp", () => {
    assert.throws(() => new SpineClient({}), TypeError);
    assert.throws(
      () => new SpineClient({ socketPath: "/x", tcp: { port: 1, token: "t" } }),
      TypeError,
    );
  });
});

// The README's Super Spine example (examples/superSpine.ts), run against a real agent, and
// held to the README: the code shown there is this file, verbatim.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { Agent, PACKAGE_DIR, REPO } from "./agent.js";

type Example = typeof import("../examples/superSpine.js");

describe("Super Spine's registry and task queue (README example)", () => {
  let agent: Agent;
  let example: Example;

  before(async () => {
    agent = await new Agent().start();
    process.env.SPINE_SOCKET = agent.socketPath;
    example = await import("../examples/superSpine.js");
  });
  after(async () => {
    await example?.spine.close();
    await agent?.destroy();
  });

  it("the README shows examples/superSpine.ts as it is", () => {
    const code = readFileSync(join(PACKAGE_DIR, "examples", "superSpine.ts"), "utf8");
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    assert.ok(
      readme.includes("```ts\n" + code + "```\n"),
      "README.md must show clients/typescript/examples/superSpine.ts verbatim in a ts block",
    );
  });

  it("registers agents and subscriptions, enqueues once, and one claim of many wins", async () => {
    await example.registerAgent("agent-1", { name: "planner", capabilities: ["llm"], status: "active" });
    await example.registerAgent("agent-2", { name: "tts", capabilities: ["tts"], status: "idle" });
    await example.subscribe("agent-1", "tasks.llm");
    await example.subscribe("agent-2", "tasks.llm");
    await example.subscribe("agent-2", "tasks.tts");
    assert.deepEqual((await example.subscribers("tasks.llm")).sort(), ["agent-1", "agent-2"]);
    assert.deepEqual(await example.subscribers("tasks.tts"), ["agent-2"]);

    assert.equal(await example.enqueueTask("task-1", "summarise", { doc: 42 }), true);
    assert.equal(await example.enqueueTask("task-1", "summarise", { doc: 43 }), false);

    const claims = await Promise.all(
      ["agent-1", "agent-2", "agent-3", "agent-4"].map((id) => example.claimTask("task-1", id)),
    );
    const winners = claims.filter((c) => c !== null);
    assert.equal(winners.length, 1);
    const stored = await example.spine.get("tasks", "task-1");
    assert.deepEqual(stored, winners[0]);
    assert.deepEqual((stored as { payload: unknown }).payload, { doc: 42 });
    assert.equal(await example.claimTask("task-1", "agent-1"), null, "claimed tasks stay claimed");
    assert.equal(await example.claimTask("no-such-task", "agent-1"), null);
  });
});

import { NotFound, PreconditionFailed, SpineClient } from "@super-spine-kit/agent-client";

const spine = new SpineClient({
  socketPath: process.env.SPINE_SOCKET ?? "/data/super-spine/spine-agent.sock",
});

interface AgentRecord { name: string; capabilities: string[]; status: "active" | "idle" }
interface Task { kind: string; payload: unknown; state: "queued" | "claimed" | "done"; owner: string | null }

// Registry: agents are critical records, on disk when put() resolves.
export async function registerAgent(id: string, agent: AgentRecord): Promise<void> {
  await spine.put("agents", id, agent);
}

// Subscriptions: one record per (agent, topic); list them by prefix.
export async function subscribe(agentId: string, topic: string): Promise<void> {
  await spine.put("subscriptions", `${topic}:${agentId}`, { agentId, topic });
}

export async function subscribers(topic: string): Promise<string[]> {
  const { records } = await spine.list<{ agentId: string }>("subscriptions", { prefix: `${topic}:` });
  return Object.values(records).map((s) => s.agentId);
}

// Task queue: enqueue creates only (If-None-Match: *), so a retried enqueue never overwrites.
export async function enqueueTask(id: string, kind: string, payload: unknown): Promise<boolean> {
  try {
    await spine.putIfAbsent("tasks", id, { kind, payload, state: "queued", owner: null });
    return true;
  } catch (error) {
    if (error instanceof PreconditionFailed) return false; // already enqueued
    throw error;
  }
}

// Claim with If-Match: of many agents claiming one task, exactly one wins.
export async function claimTask(id: string, agentId: string): Promise<Task | null> {
  try {
    const { value, version } = await spine.getVersioned<Task>("tasks", id);
    if (value.state !== "queued") return null;
    const claimed: Task = { ...value, state: "claimed", owner: agentId };
    await spine.putIfMatch("tasks", id, claimed, version);
    return claimed;
  } catch (error) {
    if (error instanceof PreconditionFailed || error instanceof NotFound) return null; // lost
    throw error;
  }
}

export { spine };

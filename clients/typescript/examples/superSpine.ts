import { PreconditionFailed, SpineClient } from "@super-spine-kit/agent-client";

const spine = new SpineClient({
  socketPath: process.env.SPINE_SOCKET ?? "/data/super-spine/spine-agent.sock",
});

interface AgentRecord { name: string; capabilities: string[]; status: "active" | "idle" }
interface AgentStats { claims: number }
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

// Claim with If-Match, and count the claim in the agent's stats in the same transaction: of
// many agents claiming one task exactly one wins, and only a claim that happened is counted.
export async function claimTask(id: string, agentId: string): Promise<Task | null> {
  for (;;) {
    const { records } = await spine.getMany<Task | AgentStats>([
      { collection: "tasks", key: id },
      { collection: "stats", key: agentId },
    ]);
    const [task, stats] = records;
    if (!task?.found || (task.value as Task).state !== "queued") return null;
    const claimed: Task = { ...(task.value as Task), state: "claimed", owner: agentId };
    const claims = stats?.found ? (stats.value as AgentStats).claims : 0;
    try {
      await spine.transaction([
        { op: "put", collection: "tasks", key: id, value: claimed, ifMatch: task.version },
        {
          op: "put", collection: "stats", key: agentId, value: { claims: claims + 1 },
          ifMatch: stats?.found ? stats.version : undefined, ifAbsent: !stats?.found,
        },
      ]);
      return claimed;
    } catch (error) {
      if (!(error instanceof PreconditionFailed)) throw error;
      if (error.index === 0) return null; // another agent won the task; nothing was written
      // only this agent's stats moved (it claimed another task meanwhile): read both again
    }
  }
}

export { spine };

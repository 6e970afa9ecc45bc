// A real `spine-agent run` for the tests: a temp directory, a config file, the child process,
// and a clean stop. Nothing is mocked; the agent is the one the Python suite tests.

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Pool } from "undici";

import { SpineClient } from "../src/index.js";
import type { ClientOptions } from "../src/index.js";

/** clients/typescript (this file runs from dist/test/). */
export const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REPO = resolve(PACKAGE_DIR, "..", "..");
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;

/** The agent's console script: SPINE_AGENT, else the repository's .venv. */
export function agentBinary(): string {
  return process.env.SPINE_AGENT ?? join(REPO, ".venv", "bin", "spine-agent");
}

/** A free loopback TCP port (the kernel's choice, released for the agent to bind). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return address.port;
}

export interface AgentOptions {
  /** Serve loopback TCP too, with a bearer token. */
  tcp?: boolean;
  /** Extra lines for the api: section of the config. */
  api?: Record<string, string | number>;
}

export class Agent {
  readonly dir: string;
  readonly socketPath: string;
  readonly token = "ts-client-test-token-0123456789";
  port: number | undefined;
  private child: ChildProcess | undefined;
  private readonly options: AgentOptions;

  constructor(options: AgentOptions = {}) {
    // Short path under /tmp: unix socket paths must stay under 108 bytes.
    this.dir = mkdtempSync("/tmp/ssk-ts-");
    this.socketPath = join(this.dir, "agent.sock");
    this.options = options;
  }

  private async writeConfig(): Promise<string> {
    const api: Record<string, string | number> = { socket: this.socketPath, ...this.options.api };
    if (this.options.tcp) {
      this.port ??= await freePort();
      const tokenFile = join(this.dir, "token");
      writeFileSync(tokenFile, this.token + "\n", { mode: 0o600 });
      chmodSync(tokenFile, 0o600);
      api.tcp_port = this.port;
      api.token_file = tokenFile;
    }
    const lines = [
      `storage_path: ${join(this.dir, "data")}`,
      "tiering:",
      "  file_backup_interval: 1h",
      "  git_backup_interval: 1h",
      "git:",
      "  branch: backup/ts-client",
      "log_level: warning",
      "api:",
      ...Object.entries(api).map(([k, v]) => `  ${k}: ${typeof v === "number" ? v : `'${v}'`}`),
    ];
    const file = join(this.dir, "agent.yaml");
    writeFileSync(file, lines.join("\n") + "\n");
    return file;
  }

  /** Start the agent; with `wait`, resolve once it answers GET /v1/health. */
  async start(wait = true): Promise<this> {
    if (this.running()) throw new Error("agent already running");
    const config = await this.writeConfig();
    const env: Record<string, string> = { PYTHONDONTWRITEBYTECODE: "1" };
    for (const [name, value] of Object.entries(process.env)) {
      if (value !== undefined && !name.startsWith("SUPER_SPINE_") && name !== "NOTIFY_SOCKET") {
        env[name] = value;
      }
    }
    this.child = spawn(agentBinary(), ["run", "--config", config], {
      cwd: this.dir,
      env,
      stdio: ["ignore", "ignore", "pipe"],
      detached: true, // its own session: a ^C to the test runner does not reach it
    });
    let stderr = "";
    this.child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    this.stderr = () => stderr;
    if (wait) await this.waitReady();
    return this;
  }

  stderr: () => string = () => "";

  running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number {
    if (this.child?.pid === undefined) throw new Error("agent not started");
    return this.child.pid;
  }

  async waitReady(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!this.running()) {
        throw new Error(`agent exited with ${this.child?.exitCode} before serving:\n${this.stderr()}`);
      }
      const pool = new Pool("http://localhost", { socketPath: this.socketPath });
      try {
        const answer = await pool.request({ method: "GET", path: "/v1/health" });
        await answer.body.text();
        if (answer.statusCode === 200) return;
      } catch {
        // not serving yet
      } finally {
        await pool.close();
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`agent did not serve within ${START_TIMEOUT_MS} ms:\n${this.stderr()}`);
  }

  /** SIGTERM and wait (SIGKILL after the timeout, which fails the test). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running()) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    if (child.signalCode === "SIGKILL") throw new Error("agent ignored SIGTERM");
  }

  /** SIGKILL: no shutdown hook runs, the socket file stays behind (connections refused). */
  async kill9(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running()) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }

  client(options: Partial<ClientOptions> = {}): SpineClient {
    return new SpineClient({ socketPath: this.socketPath, ...options });
  }

  tcpClient(token = this.token, options: Partial<ClientOptions> = {}): SpineClient {
    if (this.port === undefined) throw new Error("agent started without tcp");
    return new SpineClient({ tcp: { port: this.port, token }, ...options });
  }

  /** Stop and remove everything it wrote. */
  async destroy(): Promise<void> {
    try {
      await this.stop();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

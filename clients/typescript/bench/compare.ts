// The client's cost over raw undici on the same socket (issue 11 §3: at most 10% more).
// Run by the repository's `make bench` (bench/tsclient.py), which reads the JSON it prints:
//   node dist/bench/compare.js --socket PATH --values FILE [--ops N] [--seconds S] [--repeats R]
// Both sides use one keep-alive connection, parse and stringify JSON the same way, and run in
// the same process, interleaved (raw then client, then client then raw, ...), so load hits
// both alike. Give an even --repeats.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { Pool } from "undici";

import { SpineClient } from "../src/index.js";

const COLLECTION = "agents"; // critical: a PUT is acknowledged after its fdatasync

const { values: args } = parseArgs({
  options: {
    socket: { type: "string" },
    values: { type: "string" },
    ops: { type: "string", default: "4000" },
    seconds: { type: "string", default: "1" },
    repeats: { type: "string", default: "3" },
    keys: { type: "string", default: "10000" },
  },
});
if (!args.socket || !args.values) throw new Error("--socket and --values are required");
const socketPath = args.socket;
const records = (JSON.parse(readFileSync(args.values, "utf8")) as string[]).map(
  (text) => JSON.parse(text) as unknown,
);
const maxOps = Number(args.ops);
const maxNs = BigInt(Math.round(Number(args.seconds) * 1e9));
const repeats = Number(args.repeats);
const nkeys = Number(args.keys);
const keyOf = (i: number): string => `k${String(i % nkeys).padStart(7, "0")}`;

type Op = (i: number) => Promise<unknown>;

interface Sample {
  p50_us: number;
  p99_us: number;
  ops_s: number;
  n: number;
}

async function timeOps(op: Op, start: number): Promise<Sample> {
  for (let i = 0; i < 200; i++) await op(start + i); // warm-up: JIT, connection
  const lat: number[] = [];
  const t0 = process.hrtime.bigint();
  const deadline = t0 + maxNs;
  let t = t0;
  for (let i = 0; i < maxOps && t < deadline; i++) {
    const a = process.hrtime.bigint();
    await op(start + 200 + i);
    t = process.hrtime.bigint();
    lat.push(Number(t - a));
  }
  lat.sort((x, y) => x - y);
  const at = (q: number): number => (lat[Math.round(q * (lat.length - 1))] ?? NaN) / 1000;
  return { p50_us: at(0.5), p99_us: at(0.99), ops_s: lat.length / (Number(t - t0) / 1e9), n: lat.length };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  const options = { socketPath, connections: 1, keepAliveTimeout: 2000, keepAliveMaxTimeout: 2000 };
  const pool = new Pool("http://localhost", options);
  const client = new SpineClient({ socketPath, connections: 1 });
  const base = `/v1/records/${COLLECTION}/`;
  const put = { "content-type": "application/json" };

  const cases: { system: string; op: "get" | "put"; label: string; fn: Op }[] = [
    {
      system: "raw undici",
      op: "get",
      label: "GET",
      fn: async (i) => {
        const r = await pool.request({ method: "GET", path: base + keyOf(i) });
        const v: unknown = await r.body.json();
        if (r.statusCode !== 200) throw new Error(`GET ${r.statusCode}`);
        return v;
      },
    },
    { system: "TypeScript client", op: "get", label: "get()", fn: (i) => client.get(COLLECTION, keyOf(i)) },
    {
      system: "raw undici",
      op: "put",
      label: "PUT critical",
      fn: async (i) => {
        const body = JSON.stringify(records[i % records.length]);
        const r = await pool.request({ method: "PUT", path: base + keyOf(i), headers: put, body });
        const v: unknown = await r.body.json();
        if (r.statusCode !== 200) throw new Error(`PUT ${r.statusCode}`);
        return v;
      },
    },
    {
      system: "TypeScript client",
      op: "put",
      label: "put() critical",
      fn: (i) => client.put(COLLECTION, keyOf(i), records[i % records.length]),
    },
  ];
  const samples = cases.map(() => [] as Sample[]);
  // Cases come in pairs (raw, client) of one op; each pair runs in both orders, so neither
  // side always follows the other (JIT warm-up, the agent's caches, the page cache).
  for (let r = 0; r < repeats; r++) {
    for (let pair = 0; pair < cases.length; pair += 2) {
      const order = r % 2 === 0 ? [pair, pair + 1] : [pair + 1, pair];
      for (const index of order) {
        const c = cases[index];
        if (c) samples[index]?.push(await timeOps(c.fn, r * 7919 + index * 104729));
      }
    }
  }
  await pool.close();
  await client.close();
  const rows = cases.map((c, index) => {
    const s = samples[index] as Sample[];
    return {
      system: c.system,
      op: c.op,
      label: c.label,
      p50_us: median(s.map((x) => x.p50_us)),
      p99_us: median(s.map((x) => x.p99_us)),
      ops_s: median(s.map((x) => x.ops_s)),
      n: median(s.map((x) => x.n)),
      repeats: s.length,
    };
  });
  process.stdout.write(JSON.stringify({ node: process.version, rows }) + "\n");
}

await main();

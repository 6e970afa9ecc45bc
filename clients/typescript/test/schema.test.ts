// The generated types follow the agent's OpenAPI document: regenerate and compare.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";

import { parseETag, recordPath } from "../src/index.js";
import { backoffMs } from "../src/retry.js";
import { PACKAGE_DIR } from "./agent.js";

interface Generator {
  generate(): Promise<string>;
  SCHEMA_FILE: string;
}

describe("generated types", () => {
  it("src/schema.ts is what `npm run gen` makes from the agent's document now", async () => {
    const gen = (await import(
      pathToFileURL(join(PACKAGE_DIR, "scripts", "gen.mjs")).href
    )) as Generator;
    const fresh = await gen.generate();
    const committed = readFileSync(gen.SCHEMA_FILE, "utf8");
    assert.ok(
      fresh === committed,
      "clients/typescript/src/schema.ts is stale: run `npm run gen` in clients/typescript " +
        "and commit it (the agent's OpenAPI document changed)",
    );
  });
});

describe("helpers", () => {
  it("parses only strong quoted decimal ETags", () => {
    assert.equal(parseETag('"1764740000123456"'), 1764740000123456);
    assert.equal(parseETag(['"7"']), 7);
    for (const bad of [undefined, "7", 'W/"7"', '"-1"', '"1e3"', '"99999999999999999"', '""']) {
      assert.throws(() => parseETag(bad), /ETag/, String(bad));
    }
  });

  it("escapes collection and key each as one path segment", () => {
    assert.equal(recordPath("tasks"), "/v1/records/tasks");
    assert.equal(recordPath("tasks", "a/b c?%"), "/v1/records/tasks/a%2Fb%20c%3F%25");
  });

  it("backs off exponentially with full jitter, capped", () => {
    const options = { retries: 10, minDelayMs: 10, maxDelayMs: 100 };
    for (let attempt = 1; attempt <= 10; attempt++) {
      const ceiling = Math.min(100, 10 * 2 ** (attempt - 1));
      for (let i = 0; i < 50; i++) {
        const wait = backoffMs(options, attempt);
        assert.ok(wait >= 0 && wait <= ceiling, `${wait} over ${ceiling} at try ${attempt}`);
      }
    }
  });
});

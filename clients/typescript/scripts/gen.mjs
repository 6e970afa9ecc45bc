// Generates src/schema.ts from the agent's OpenAPI document (`python -m bootstrap.openapi`).
// `npm run gen` writes it; test/schema.test.ts calls generate() and fails when the committed
// file differs, so the client's types cannot drift from what the agent answers.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
export const PACKAGE_DIR = resolve(here, "..");
export const REPO = resolve(PACKAGE_DIR, "..", "..");
export const SCHEMA_FILE = join(PACKAGE_DIR, "src", "schema.ts");

// The document's Value schema (any JSON value) is recursive through arrays, which TypeScript
// cannot express as an indexed access on `components` (TS2502). It is emitted as this alias,
// the same set of values; the schema's limits (depth, integer range, size) are in its comment.
const JSON_VALUE =
  "export type JsonValue = boolean | string | number | null | JsonValue[] | " +
  "{ [key: string]: JsonValue };\n\n";
const VALUE_SCHEMA = "#/components/schemas/Value";

const HEADER =
  "// Generated from the agent's OpenAPI document by `npm run gen` (scripts/gen.mjs).\n" +
  "// Do not edit: test/schema.test.ts fails when this file is stale.\n\n" +
  JSON_VALUE;

/** The Python that has the agent installed: SPINE_PYTHON, else the repository's .venv. */
export function python() {
  return process.env.SPINE_PYTHON ?? join(REPO, ".venv", "bin", "python");
}

/** The document as the agent's code builds it now. */
export function openapiDocument() {
  const out = execFileSync(python(), ["-m", "bootstrap.openapi"], {
    cwd: REPO,
    encoding: "utf8",
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
  });
  return JSON.parse(out);
}

/** The TypeScript text of src/schema.ts for the current document. */
export async function generate() {
  const ast = await openapiTS(openapiDocument(), {
    emptyObjectsUnknown: true,
    transform(_schema, options) {
      return options.path === VALUE_SCHEMA
        ? ts.factory.createTypeReferenceNode("JsonValue")
        : undefined;
    },
  });
  return HEADER + astToString(ast);
}

if (process.argv.includes("--write")) {
  const text = await generate();
  const old = (() => {
    try {
      return readFileSync(SCHEMA_FILE, "utf8");
    } catch {
      return "";
    }
  })();
  writeFileSync(SCHEMA_FILE, text);
  console.log(`${SCHEMA_FILE}: ${old === text ? "unchanged" : "written"}`);
}

// Bundles the unit tests with esbuild (they are TypeScript) and runs them
// with Node's own test runner.
import * as esbuild from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = mkdtempSync(join(tmpdir(), "airlock-web-test-"));
try {
  const entries = readdirSync(here).filter((f) => f.endsWith(".test.ts")).map((f) => join(here, f));
  await esbuild.build({ entryPoints: entries, bundle: true, platform: "node", format: "esm", outdir: out, outExtension: { ".js": ".mjs" }, logLevel: "warning" });
  const files = readdirSync(out).map((f) => join(out, f));
  const res = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
  process.exitCode = res.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}

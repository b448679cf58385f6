// Bundles the web UI into internal/ui/dist, which the Go server embeds
// (internal/ui/embed.go). Everything comes from web/src and the locked npm
// packages; nothing is fetched at run time (no CDN) and nothing is inlined
// into index.html, which the server's CSP forbids.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "internal", "ui", "dist");

mkdirSync(dist, { recursive: true });
// Leave the committed placeholder; drop what an earlier build wrote, so a
// renamed asset never lingers in the binary.
for (const f of readdirSync(dist)) {
  if (f !== ".gitkeep") rmSync(join(dist, f), { recursive: true, force: true });
}

await esbuild.build({
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "iife",
  target: ["es2022"],
  outdir: dist,
  logLevel: "warning",
  legalComments: "linked",
});
await esbuild.build({
  entryPoints: { app: join(here, "src", "app.css") },
  bundle: true,
  minify: true,
  outdir: dist,
  logLevel: "warning",
  legalComments: "linked",
});
copyFileSync(join(here, "src", "index.html"), join(dist, "index.html"));
console.log(`web: wrote ${readdirSync(dist).filter((f) => f !== ".gitkeep").join(", ")} to ${dist}`);

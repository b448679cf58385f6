// Unit tests of the page's pure parts, run by `npm test` (node:test, after
// esbuild bundles this file): what the browser test cannot reach, such as
// highlighter output that is not what highlight.js makes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { clean } from "../src/dom";
import { parse } from "../src/diff";
import { highlightLines, languageOf, tokens } from "../src/highlight";

test("tokens accepts highlight.js's spans and escapes only", () => {
  assert.deepEqual(tokens('<span class="hljs-keyword">if</span> a &lt; b &amp;&amp; c'), [
    { text: "if", cls: "hljs-keyword" },
    { text: " a ", cls: "" },
    { text: "<", cls: "" },
    { text: " b ", cls: "" },
    { text: "&", cls: "" },
    { text: "&", cls: "" },
    { text: " c", cls: "" },
  ]);
  assert.deepEqual(tokens('<span class="hljs-title function_">f</span>'), [{ text: "f", cls: "hljs-title function_" }]);
});

test("tokens refuses anything else, so the code is shown as plain text", () => {
  for (const bad of [
    "<img src=x onerror=alert(1)>",
    '<span class="x" onclick="alert(1)">a</span>',
    '<span class="hljs-string">unclosed',
    "</span>",
    "&#60;script&#62;",
    '<span class="a"><b>x</b></span>',
    '<span class="a">x</span ><script>',
  ]) {
    assert.equal(tokens(bad), null, bad);
  }
});

test("highlightLines keeps the text exactly, split by line", () => {
  const code = 'x := "<img src=x>"\n// a comment & more\n\nreturn `\n`';
  for (const lang of ["go", null, "nonexistent"]) {
    const lines = highlightLines(code, lang);
    assert.equal(lines.map((l) => l.map((s) => s.text).join("")).join("\n"), code, String(lang));
  }
  const hl = highlightLines('const s = "a";', "javascript");
  assert.ok(hl[0].some((s) => s.cls.startsWith("hljs-")), "no highlight classes");
});

test("languageOf knows files by name and extension", () => {
  assert.equal(languageOf("cmd/main.go"), "go");
  assert.equal(languageOf("Dockerfile"), "dockerfile");
  assert.equal(languageOf("a/Makefile"), "makefile");
  assert.equal(languageOf("README"), null);
});

test("clean shows control characters instead of passing them on", () => {
  assert.equal(clean("a\u001b[31mb\u0007\tc\nd\u009b"), "a\u241b[31mb\u2407\tc\nd\ufffd");
});

test("parse numbers the lines of each side and skips the file header", () => {
  const patch = [
    "diff --git a/f.go b/f.go",
    "index 1..2 100644",
    "--- a/f.go",
    "+++ b/f.go",
    "@@ -3,3 +3,3 @@ func f() {",
    " keep",
    "-old",
    "+new",
    "\\ No newline at end of file",
  ].join("\n");
  const { lines, oldText, newText } = parse(patch);
  assert.deepEqual(lines.map((l) => [l.kind, l.oldNo, l.newNo]), [
    ["hunk", undefined, undefined],
    ["ctx", 3, 3],
    ["del", 4, undefined],
    ["add", undefined, 4],
    ["meta", undefined, undefined],
  ]);
  assert.deepEqual(oldText, ["keep", "old"]);
  assert.deepEqual(newText, ["keep", "new"]);
});

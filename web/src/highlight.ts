// Syntax highlighting of diffs without ever parsing markup: highlight.js
// escapes the code it returns, and even so its output is only tokenised here
// (its <span class="hljs-…"> tags and entity-escaped text, nothing else);
// the page is built from the tokens with createElement and textContent. Any
// output that does not tokenise cleanly is shown as plain text.
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import css from "highlight.js/lib/languages/css";
import dockerfile from "highlight.js/lib/languages/dockerfile";
import go from "highlight.js/lib/languages/go";
import ini from "highlight.js/lib/languages/ini";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import makefile from "highlight.js/lib/languages/makefile";
import markdown from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";

const languages = { bash, c, css, dockerfile, go, ini, javascript, json, makefile, markdown, python, rust, typescript, xml, yaml };
for (const [name, lang] of Object.entries(languages)) hljs.registerLanguage(name, lang);

const byExt: Record<string, string> = {
  sh: "bash", bash: "bash", c: "c", h: "c", css: "css", go: "go", ini: "ini", toml: "ini", cfg: "ini",
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript", json: "json",
  md: "markdown", py: "python", rs: "rust", ts: "typescript", tsx: "typescript",
  html: "xml", xml: "xml", svg: "xml", yml: "yaml", yaml: "yaml", mk: "makefile",
};

export function languageOf(path: string): string | null {
  const base = path.split("/").pop() ?? "";
  if (/^Dockerfile|^Containerfile/.test(base)) return "dockerfile";
  if (/^(GNU)?[Mm]akefile$/.test(base)) return "makefile";
  const ext = base.includes(".") ? base.split(".").pop()!.toLowerCase() : "";
  return byExt[ext] ?? null;
}

// A run of text and the highlight classes that apply to it.
export interface Segment {
  text: string;
  cls: string;
}

const entities: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', "#x27": "'", "#39": "'" };

// tokens turns highlight.js's escaped HTML into segments, or null when it
// holds anything but span tags with hljs classes and escaped text.
export function tokens(html: string): Segment[] | null {
  const out: Segment[] = [];
  const stack: string[] = [];
  const re = /<span class="([\w\- ]+)">|<\/span>|([^<&]+)|&(amp|lt|gt|quot|#x27|#39);/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while (pos < html.length) {
    re.lastIndex = pos;
    m = re.exec(html);
    if (!m) return null;
    pos = re.lastIndex;
    if (m[1] !== undefined) {
      const classes = m[1].split(" ").filter((k) => /^(hljs-[\w-]+|[a-z]+_*)$/.test(k));
      stack.push(classes.join(" "));
    } else if (m[0] === "</span>") {
      if (!stack.length) return null;
      stack.pop();
    } else {
      const text = m[2] !== undefined ? m[2] : entities[m[3]];
      out.push({ text, cls: stack.filter(Boolean).join(" ") });
    }
  }
  return stack.length ? null : out;
}

// highlightLines highlights code and splits it into lines of segments.
export function highlightLines(code: string, lang: string | null): Segment[][] {
  const plain = () => code.split("\n").map((l) => [{ text: l, cls: "" }]);
  if (!lang || !hljs.getLanguage(lang) || code.length > 400_000) return plain();
  let segs: Segment[] | null;
  try {
    segs = tokens(hljs.highlight(code, { language: lang, ignoreIllegals: true }).value);
  } catch {
    segs = null;
  }
  if (!segs) return plain();
  const lines: Segment[][] = [[]];
  for (const s of segs) {
    const parts = s.text.split("\n");
    parts.forEach((p, i) => {
      if (i > 0) lines.push([]);
      if (p) lines[lines.length - 1].push({ text: p, cls: s.cls });
    });
  }
  return lines;
}

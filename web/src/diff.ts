// A run's diff against its base: per file, with its stat, highlighted.
import { Diff, DiffFile } from "./api";
import { append, h } from "./dom";
import { highlightLines, languageOf, Segment } from "./highlight";

interface Line {
  kind: "add" | "del" | "ctx" | "hunk" | "meta";
  text: string;
  oldNo?: number;
  newNo?: number;
  side?: number; // index of the line in its side's highlighted text
}

// parse reads one file's unified diff. The old and the new side are each
// highlighted as a whole (so multi-line strings and comments come out
// right), then each patch line takes its tokens from its side.
export function parse(patch: string): { lines: Line[]; oldText: string[]; newText: string[] } {
  const lines: Line[] = [];
  const oldText: string[] = [];
  const newText: string[] = [];
  let o = 0;
  let n = 0;
  let inHunk = false;
  for (const raw of patch.replace(/\n$/, "").split("\n")) {
    const hm = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(raw);
    if (hm) {
      o = Number(hm[1]);
      n = Number(hm[2]);
      inHunk = true;
      lines.push({ kind: "hunk", text: raw });
      continue;
    }
    if (!inHunk || raw.startsWith("\\")) {
      // The file's header says what the summary line already does.
      if (!inHunk && /^(diff --git |index |--- |\+\+\+ )/.test(raw)) continue;
      lines.push({ kind: "meta", text: raw });
      continue;
    }
    const body = raw.slice(1);
    if (raw.startsWith("+")) {
      lines.push({ kind: "add", text: body, newNo: n++, side: newText.push(body) - 1 });
    } else if (raw.startsWith("-")) {
      lines.push({ kind: "del", text: body, oldNo: o++, side: oldText.push(body) - 1 });
    } else {
      oldText.push(body);
      lines.push({ kind: "ctx", text: body, oldNo: o++, newNo: n++, side: newText.push(body) - 1 });
    }
  }
  return { lines, oldText, newText };
}

function segmentsEl(segs: Segment[] | undefined, fallback: string): HTMLElement {
  const code = h("code");
  if (!segs) {
    append(code, fallback);
    return code;
  }
  for (const s of segs) append(code, s.cls ? h("span", { class: s.cls }, s.text) : s.text);
  return code;
}

export function renderFile(f: DiffFile): HTMLElement {
  const name = f.old_path && f.old_path !== f.path ? `${f.old_path} → ${f.path}` : f.path;
  const head = h("summary", { class: "file-head" },
    h("span", { class: `fstatus s-${f.status}` }, f.status),
    " ",
    h("span", { class: "path mono" }, name),
    " ",
    h("span", { class: "adds" }, `+${f.additions}`),
    " ",
    h("span", { class: "dels" }, `-${f.deletions}`));
  const box = h("details", { class: "file", open: true, "data-path": f.path }, head);
  if (f.binary) {
    box.append(h("p", { class: "muted" }, "binary file"));
    return box;
  }
  const { lines, oldText, newText } = parse(f.patch ?? "");
  const lang = languageOf(f.path);
  const oldHl = highlightLines(oldText.join("\n"), lang);
  const newHl = highlightLines(newText.join("\n"), lang);
  const table = h("table", { class: "diff" });
  const tbody = h("tbody");
  table.append(tbody);
  for (const l of lines) {
    if (l.kind === "hunk" || l.kind === "meta") {
      tbody.append(h("tr", { class: l.kind }, h("td", { colspan: 3 }, l.text)));
      continue;
    }
    const segs = l.side === undefined ? undefined : (l.kind === "del" ? oldHl : newHl)[l.side];
    const sign = l.kind === "add" ? "+" : l.kind === "del" ? "-" : " ";
    tbody.append(
      h("tr", { class: l.kind },
        h("td", { class: "ln" }, l.oldNo ?? ""),
        h("td", { class: "ln" }, l.newNo ?? ""),
        h("td", { class: "code" }, h("span", { class: "sign" }, sign), segmentsEl(segs, l.text))),
    );
  }
  box.append(table);
  return box;
}

export function renderDiff(d: Diff): HTMLElement {
  const files = d.files ?? [];
  const wrap = h("div", { class: "diffs" });
  if (d.stat) wrap.append(h("pre", { class: "stat" }, d.stat));
  if (!files.length) wrap.append(h("p", { class: "muted" }, "No changes against the base."));
  for (const f of files) wrap.append(renderFile(f));
  return wrap;
}

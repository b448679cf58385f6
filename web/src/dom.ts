// The only way the UI makes DOM: strings become text nodes, never markup.
// Everything a sandbox can write (run names, branches, commit subjects,
// transcripts, diffs, egress hosts) reaches the page through here or through
// xterm.js, so no data is ever parsed as HTML.

type Attrs = Record<string, string | number | boolean | undefined | null | EventListener>;
export type Child = Node | string | number | null | undefined | false;

// h("a", {href: "/x", class: "c", onclick: f}, "text", child...)
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === "function") {
      el.addEventListener(k.replace(/^on/, ""), v);
    } else if (k === "style") {
      throw new Error("style attributes are blocked by the CSP: use a class");
    } else if (/^on/i.test(k)) {
      throw new Error(`event handler attribute ${k} must be a function`);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(clean(String(c))) : c);
  }
}

export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

// clean makes control characters visible instead of dropping them: an escape
// sequence in a commit subject shows as "␛[31m", inert and noticeable.
// Newlines and tabs are kept (pre blocks show them).
export function clean(s: string): string {
  return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) =>
    c === "\u007f" ? "\u2421" : String.fromCharCode(0x2400 + c.charCodeAt(0)),
  ).replace(/[\u0080-\u009f]/g, "\ufffd");
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no element #${id}`);
  return el as T;
}

export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  let s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h${m % 60 ? `${m % 60}m` : ""}`;
  return `${Math.floor(hr / 24)}d`;
}

export function money(n: number | undefined): string {
  return n ? `$${n.toFixed(n < 1 ? 4 : 2)}` : "$0";
}

let toastSeq = 0;
export function toast(text: string, kind: "info" | "error" = "info"): void {
  const box = byId("toasts");
  const t = h("div", { class: `toast ${kind}`, "data-seq": ++toastSeq, role: "status" }, text);
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === "error" ? 15000 : 8000);
}

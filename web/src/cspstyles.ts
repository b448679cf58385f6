// xterm.js styles its DOM renderer with <style> elements and style
// attributes set from strings, both of which the server's CSP
// (style-src 'self') blocks. Rather than weaken the policy for every page,
// the CSS xterm.js itself generates is re-applied through the CSSOM, which
// CSP does not govern: a <style> element's text becomes a constructed
// stylesheet, a blocked style attribute is set through element.style.
// Only xterm's own output is touched (style elements it made, elements under
// .xterm); its values are numbers and colours it computed, never text from a
// sandbox, which reaches the terminal only as cells.
const sheets = new Map<HTMLStyleElement, CSSStyleSheet>();

function syncSheets(): void {
  let changed = false;
  for (const [el, sheet] of sheets) {
    if (!el.isConnected) {
      sheets.delete(el);
      changed = true;
    } else if ((el as HTMLStyleElement & { _mirrored?: string })._mirrored !== el.textContent) {
      sheet.replaceSync(el.textContent ?? "");
      (el as HTMLStyleElement & { _mirrored?: string })._mirrored = el.textContent ?? "";
    }
  }
  for (const el of document.querySelectorAll<HTMLStyleElement>(".xterm style, head style")) {
    if (sheets.has(el)) continue;
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(el.textContent ?? "");
    (el as HTMLStyleElement & { _mirrored?: string })._mirrored = el.textContent ?? "";
    sheets.set(el, sheet);
    changed = true;
  }
  if (changed) document.adoptedStyleSheets = [...sheets.values()];
}

function fixAttributes(root: Element): void {
  const fix = (el: Element) => {
    const he = el as HTMLElement;
    const want = he.getAttribute("style");
    // A blocked attribute leaves element.style empty.
    if (want && he.style && he.style.length === 0) he.style.cssText = want;
  };
  if (root.hasAttribute("style")) fix(root);
  for (const el of root.querySelectorAll("[style]")) fix(el);
}

export function applyXtermStyles(container: HTMLElement): void {
  const obs = new MutationObserver((records) => {
    let styles = false;
    for (const r of records) {
      if (r.target instanceof HTMLStyleElement || r.target.parentNode instanceof HTMLStyleElement) styles = true;
      if (r.type === "attributes" && r.target instanceof Element) fixAttributes(r.target);
      for (const n of r.addedNodes) {
        if (n instanceof HTMLStyleElement) styles = true;
        else if (n instanceof Element) fixAttributes(n);
      }
    }
    if (styles) syncSheets();
  });
  obs.observe(container, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["style"] });
  obs.observe(document.head, { subtree: true, childList: true, characterData: true });
  syncSheets();
  fixAttributes(container);
}

// airlock's web UI: one bundle, routed on the path the server served
// index.html for (docs/ui.md).
import { showHeader } from "./api";
import { dashboard } from "./dashboard";
import { byId, h } from "./dom";
import { newRunPage } from "./newrun";
import { runPage } from "./run";
import { terminalPage } from "./terminal";

function route(): void {
  const main = byId("main");
  main.replaceChildren();
  showHeader();
  const path = location.pathname;
  let m: RegExpExecArray | null;
  if (path === "/" || path === "") {
    dashboard(main);
  } else if (path === "/new") {
    newRunPage(main);
  } else if ((m = /^\/runs\/([^/]+)\/terminal$/.exec(path))) {
    terminalPage(main, decodeURIComponent(m[1]));
  } else if ((m = /^\/runs\/([^/]+)\/?$/.exec(path))) {
    runPage(main, decodeURIComponent(m[1]));
  } else {
    main.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "All runs")));
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", route);
else route();

// The dashboard: every run of the project (or of all projects), live.
import { getSession, Run, stream } from "./api";
import { age, append, clear, h, money } from "./dom";

export function dashboard(main: HTMLElement): void {
  const params = new URLSearchParams(location.search);
  let all = params.get("all") === "1";
  const body = h("tbody");
  const empty = h("p", { class: "empty hidden" }, "No runs yet. Start one with `airlock run` or ");
  append(empty, h("a", { href: "/new" }, "from this page"), ".");
  const toggle = h("input", { type: "checkbox", id: "all-projects" }) as HTMLInputElement;
  toggle.checked = all;
  const projectHead = h("th", { class: "col-project" }, "project");
  const table = h(
    "table",
    { class: "runs", id: "runs" },
    h(
      "thead",
      {},
      h("tr", {}, h("th", {}, "run"), h("th", {}, "status"), h("th", {}, "agent"), h("th", {}, "branch"), projectHead,
        h("th", {}, "age"), h("th", { class: "num" }, "turns"), h("th", { class: "num" }, "cost"),
        h("th", { class: "num", title: "egress connections allowed / denied" }, "allowed / denied")),
    ),
    body,
  );
  main.append(
    h("div", { class: "bar" }, h("h1", {}, "Runs"), h("label", { class: "toggle" }, toggle, " all projects")),
    h("div", { class: "scroll" }, table),
    empty,
  );

  let runs: Run[] = [];
  const render = () => {
    clear(body);
    table.classList.toggle("all", all);
    empty.classList.toggle("hidden", runs.length > 0);
    const now = Date.now();
    for (const r of runs) {
      const denied = r.egress_denied ?? 0;
      body.append(
        h("tr", { "data-id": r.id, class: `status-${r.status}` },
          h("td", {}, h("a", { href: `/runs/${encodeURIComponent(r.id)}`, class: "run-link" }, r.id)),
          h("td", {}, h("span", { class: `status ${r.status}` }, r.status)),
          h("td", {}, r.agent || "claude"),
          h("td", { class: "mono" }, r.branch),
          h("td", { class: "col-project mono" }, r.project),
          h("td", { title: r.created_at ?? "" }, age(r.created_at, now)),
          h("td", { class: "num" }, r.turns ?? 0),
          h("td", { class: "num" }, money(r.cost_usd)),
          h("td", { class: "num" }, `${r.egress_allowed ?? 0} / `, h("span", { class: denied ? "denied" : "" }, denied))),
      );
    }
  };

  let s = open();
  function open() {
    return stream(`/api/stream${all ? "?all=1" : ""}`, {
      runs: (data) => {
        runs = Array.isArray(data) ? (data as Run[]) : [];
        render();
      },
    });
  }
  toggle.addEventListener("change", () => {
    all = toggle.checked;
    history.replaceState(null, "", all ? "/?all=1" : "/");
    s.close();
    runs = [];
    render();
    s = open();
  });
  // Ages move on even when nothing else changes.
  setInterval(render, 30000);
  getSession()
    .then((ss) => {
      if (ss.all_projects && !params.has("all")) {
        toggle.checked = all = true;
        s.close();
        s = open();
      }
    })
    .catch(() => {});
}

// A run's page: its state, the transcript as it streams, its commits as they
// land, the diff against its base and the egress log; and the actions the
// CLI has (stop, kill, merge, push, pr, rm).
import { APIError, Commit, Diff, EgressRecord, Entry, get, post, Run, RunDetail, stream, TranscriptChunk } from "./api";
import { age, append, clear, h, money, toast } from "./dom";
import { renderDiff } from "./diff";

export function runPage(main: HTMLElement, id: string): void {
  const base = `/api/runs/${encodeURIComponent(id)}`;
  const title = h("h1", {}, id);
  const facts = h("dl", { class: "facts", id: "facts" });
  const error = h("div", { class: "error hidden", id: "action-error", role: "alert" });
  const message = h("div", { class: "message hidden", id: "action-message" });
  const summary = h("pre", { class: "summary hidden", id: "summary" });
  const transcript = h("div", { class: "transcript", id: "transcript" });
  const commits = h("ol", { class: "commits", id: "commits" });
  const diff = h("div", { id: "diff" }, h("p", { class: "muted" }, "loading…"));
  const egress = h("div", { id: "egress" }, h("p", { class: "muted" }, "loading…"));
  const squash = h("input", { type: "checkbox", id: "squash" }) as HTMLInputElement;
  let run: Run | null = null;

  const showError = (e: unknown) => {
    const text = e instanceof Error ? e.message : String(e);
    clear(error);
    append(error, text);
    error.classList.remove("hidden");
    message.classList.add("hidden");
  };
  const showMessage = (text: string, url?: string) => {
    clear(message);
    append(message, text);
    if (url && /^https?:\/\//.test(url)) append(message, " ", h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url));
    message.classList.remove("hidden");
    error.classList.add("hidden");
  };

  const action = (name: string, label: string, body: () => unknown | null, confirmText?: () => string) =>
    h("button", {
      type: "button",
      id: `btn-${name}`,
      onclick: async (ev: Event) => {
        const b = body();
        if (b === null) return;
        if (confirmText && !confirm(confirmText())) return;
        const btn = ev.currentTarget as HTMLButtonElement;
        btn.disabled = true;
        try {
          const res = await post<{ message?: string; url?: string }>(`${base}/${name}`, b);
          showMessage(res?.message || `${label}: done`, res?.url);
          if (name === "rm") setTimeout(() => (location.href = "/"), 800);
          refresh();
        } catch (e) {
          showError(e);
        } finally {
          btn.disabled = false;
        }
      },
    }, label);

  const buttons = h("div", { class: "actions" },
    h("a", { class: "button", id: "btn-terminal", href: `/runs/${encodeURIComponent(id)}/terminal`, target: "_blank" }, "terminal"),
    action("stop", "stop", () => ({})),
    action("kill", "kill", () => ({}), () => `Kill run ${id}? The agent is stopped at once, without a chance to finish.`),
    h("span", { class: "group" },
      action("merge", "merge", () => ({ squash: squash.checked }),
        () => `Merge ${run?.branch ?? `airlock/${id}`} into ${run?.base_branch || "its base branch"}${squash.checked ? " as one squashed commit" : ""}?`),
      h("label", { class: "toggle" }, squash, " squash")),
    action("push", "push", () => {
      const remote = prompt("Push the run's branch to which remote?", "origin");
      if (remote === null) return null;
      return { remote, branch: "" };
    }),
    action("pr", "open PR", () => {
      const t = prompt("Pull request title (empty: from the run)", "");
      if (t === null) return null;
      return { title: t, body: "", draft: false };
    }),
    action("rm", "remove", () => ({ force: run?.status === "running" || run?.status === "creating" }),
      () => `Remove run ${id}${run?.status === "running" ? " (it is running: it is stopped first)" : ""}? Its container and copy are deleted; its logs are kept.`),
  );

  const section = (heading: string, id: string, ...body: Node[]) =>
    h("section", { id: `sec-${id}` }, h("h2", {}, heading), ...body);
  const refreshButton = (f: () => void) => h("button", { type: "button", class: "small", onclick: f }, "refresh");

  main.append(
    h("div", { class: "bar" }, title, h("span", { id: "run-status", class: "status" })),
    facts,
    buttons,
    error,
    message,
    summary,
    h("div", { class: "columns" },
      section("Transcript", "transcript", transcript),
      h("div", {},
        section("Commits", "commits", commits),
        section("Egress", "egress", refreshButton(() => loadEgress()), egress))),
    section("Diff", "diff", refreshButton(() => loadDiff()), diff),
  );

  const showRun = (r: Run) => {
    run = r;
    const st = document.getElementById("run-status")!;
    st.className = `status ${r.status}`;
    st.textContent = r.status;
    document.title = `${r.id} · ${r.status} · airlock`;
    clear(facts);
    const fact = (k: string, v: string | number | undefined) => {
      if (v === undefined || v === "") return;
      facts.append(h("dt", {}, k), h("dd", { "data-fact": k }, v));
    };
    fact("agent", r.agent || "claude");
    fact("branch", r.branch);
    fact("base", r.base_branch ? `${r.base_branch} @ ${(r.base_commit ?? "").slice(0, 10)}` : undefined);
    fact("prompt", r.prompt);
    fact("age", age(r.created_at));
    fact("turns", r.turns ?? 0);
    fact("cost", money(r.cost_usd) + (r.max_cost_usd ? ` of ${money(r.max_cost_usd)}` : ""));
    fact("egress", `${r.egress_allowed ?? 0} allowed, ${r.egress_denied ?? 0} denied`);
    fact("exit code", r.finished_at ? r.exit_code : undefined);
    fact("error", r.error);
    fact("harvest", r.harvest_error || r.harvest_warning);
    const live = r.status === "running" || r.status === "creating";
    for (const b of ["stop", "kill"]) (document.getElementById(`btn-${b}`) as HTMLButtonElement).disabled = !live;
  };

  const seen = new Set<string>();
  const commitItem = (c: Commit) =>
    h("li", { "data-sha": c.sha },
      h("span", { class: "sha mono" }, c.sha.slice(0, 10)), " ",
      h("span", { class: "subject" }, c.subject), " ",
      h("span", { class: "muted" }, `${c.author} · ${age(c.time)}`),
      c.stat ? h("pre", { class: "stat" }, c.stat) : null);
  const addCommit = (c: Commit, fresh: boolean) => {
    if (!c || typeof c.sha !== "string" || seen.has(c.sha)) return;
    seen.add(c.sha);
    commits.append(commitItem(c));
    if (fresh) {
      const text = `New commit in ${id}: ${c.subject}`;
      toast(text);
      if ("Notification" in window && Notification.permission === "granted") {
        // Notification text is plain text, never markup.
        new Notification(`airlock: ${id}`, { body: `${c.sha.slice(0, 10)} ${c.subject}`, tag: c.sha });
      }
    }
  };

  const entryEl = (e: Entry) => h("div", { class: `entry k-${e.kind}` }, h("span", { class: "kind" }, e.kind), h("pre", {}, e.text));

  async function refresh() {
    try {
      const d = await get<RunDetail>(base);
      showRun(d.run);
      if (d.summary) {
        clear(summary);
        append(summary, d.summary);
        summary.classList.remove("hidden");
      }
      for (const c of d.commits ?? []) addCommit(c, false);
    } catch (e) {
      if (e instanceof APIError && e.status === 404) {
        clear(main);
        main.append(h("h1", {}, "No such run"), h("p", { class: "error" }, e.message));
        return;
      }
      showError(e);
    }
  }

  async function loadDiff() {
    try {
      const d = await get<Diff>(`${base}/diff`);
      clear(diff);
      diff.append(renderDiff(d));
    } catch (e) {
      clear(diff);
      diff.append(h("p", { class: "muted" }, e instanceof Error ? e.message : String(e)));
    }
  }

  async function loadEgress() {
    try {
      const recs = (await get<EgressRecord[] | null>(`${base}/egress`)) ?? [];
      clear(egress);
      if (!recs.length) {
        egress.append(h("p", { class: "muted" }, "No connections."));
        return;
      }
      const tb = h("tbody");
      for (const r of recs.slice(-500).reverse()) {
        tb.append(h("tr", { class: r.decision === "denied" ? "denied" : "allowed" },
          h("td", { class: "mono nowrap", title: r.time ?? "" }, (r.time ?? "").slice(11, 19)),
          h("td", {}, r.decision),
          h("td", { class: "mono" }, r.host),
          h("td", { class: "mono" }, [r.method, r.path].filter(Boolean).join(" ")),
          h("td", {}, r.status ? String(r.status) : ""),
          h("td", {}, r.reason ?? "")));
      }
      egress.append(h("div", { class: "scroll" }, h("table", { class: "egress" },
        h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "decision"), h("th", {}, "host"), h("th", {}, "request"), h("th", {}, "status"), h("th", {}, "reason"))),
        tb)));
    } catch (e) {
      clear(egress);
      egress.append(h("p", { class: "muted" }, e instanceof Error ? e.message : String(e)));
    }
  }

  if ("Notification" in window && Notification.permission === "default") {
    const ask = h("button", { type: "button", class: "small", id: "notify" }, "notify me of commits");
    ask.addEventListener("click", () => {
      Notification.requestPermission().finally(() => ask.remove());
    });
    commits.before(ask);
  }

  refresh().then(() => {
    loadDiff();
    loadEgress();
  });
  let lastRun = "";
  stream(`${base}/stream`, {
    transcript: (data) => {
      const chunk = data as TranscriptChunk;
      const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
      for (const e of chunk.entries ?? []) transcript.append(entryEl(e));
      if (atBottom) transcript.scrollTop = transcript.scrollHeight;
    },
    commit: (data) => {
      addCommit(data as Commit, true);
      loadDiff();
    },
    run: (data) => {
      const r = data as Run;
      const key = `${r.status}/${r.egress_allowed}/${r.egress_denied}`;
      showRun(r);
      if (key !== lastRun) {
        if (lastRun) loadEgress();
        if (lastRun && r.status !== "running") loadDiff();
        lastRun = key;
      }
    },
  }, () => clear(transcript));
}

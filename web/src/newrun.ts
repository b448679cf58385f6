// New run: a prompt file of the project or a typed prompt, a profile, an
// agent and a budget; the server starts it detached (as `airlock run -d`).
import { get, NewInfo, post } from "./api";
import { append, clear, h } from "./dom";

export function newRunPage(main: HTMLElement): void {
  document.title = "new run · airlock";
  const file = h("select", { id: "prompt-file", name: "prompt_file" }, h("option", { value: "" }, "(type a prompt below)"));
  const text = h("textarea", { id: "prompt", name: "prompt", rows: 10, placeholder: "What should the agent do?" });
  const name = h("input", { id: "name", name: "name", placeholder: "(from the prompt)" });
  const profile = h("select", { id: "profile", name: "profile" }, h("option", { value: "" }, "(default)"));
  const agent = h("select", { id: "agent", name: "agent" }, h("option", { value: "" }, "(default)"));
  const budget = h("input", { id: "budget", name: "max_cost_usd", type: "number", min: 0, step: "0.5", placeholder: "USD (empty: the default)" });
  const error = h("div", { class: "error hidden", id: "new-error", role: "alert" });
  const submit = h("button", { type: "submit", id: "start" }, "start run");
  const row = (label: string, el: HTMLElement) => h("label", { class: "row" }, h("span", {}, label), el);
  const form = h("form", { class: "newrun", id: "new-run" },
    row("prompt file", file), row("or a prompt", text), row("name", name), row("profile", profile),
    row("agent", agent), row("budget", budget), error, submit);
  main.append(h("h1", {}, "New run"), form);

  get<NewInfo>("/api/new")
    .then((info) => {
      for (const p of info.prompts ?? []) file.append(h("option", { value: p }, p));
      for (const p of info.profiles ?? []) profile.append(h("option", { value: p }, p));
      for (const a of info.agents ?? []) agent.append(h("option", { value: a }, a));
    })
    .catch((e) => {
      clear(error);
      append(error, e instanceof Error ? e.message : String(e));
      error.classList.remove("hidden");
    });
  file.addEventListener("change", () => {
    text.disabled = file.value !== "";
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.classList.add("hidden");
    try {
      const res = await post<{ id: string }>("/api/runs", {
        name: name.value.trim(),
        prompt: file.value ? "" : text.value,
        prompt_file: file.value,
        profile: profile.value,
        agent: agent.value,
        max_cost_usd: budget.value ? Number(budget.value) : 0,
      });
      location.href = `/runs/${encodeURIComponent(res.id)}`;
    } catch (e) {
      clear(error);
      append(error, e instanceof Error ? e.message : String(e));
      error.classList.remove("hidden");
      submit.disabled = false;
    }
  });
}

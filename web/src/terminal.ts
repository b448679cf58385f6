// A terminal tab: xterm.js on the run's terminal WebSocket. Binary frames
// carry terminal bytes both ways; a text frame from here is a JSON resize.
// The server attaches to a tmux session, so a reload or a second tab shows
// the same screen; a dropped connection is made again, with backoff.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { get, markDown, RunDetail } from "./api";
import { h } from "./dom";
import { applyXtermStyles } from "./cspstyles";

export function terminalPage(main: HTMLElement, id: string): void {
  document.body.classList.add("terminal-page");
  document.title = `${id} · terminal · airlock`;
  const status = h("span", { id: "term-status", class: "muted" }, "connecting…");
  const box = h("div", { id: "terminal" });
  main.append(
    h("div", { class: "bar" }, h("a", { href: `/runs/${encodeURIComponent(id)}` }, id), status),
    box,
  );
  applyXtermStyles(box);
  const term = new Terminal({
    cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, monospace",
    fontSize: 14,
    scrollback: 5000,
    allowProposedApi: false,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  term.focus();

  const enc = new TextEncoder();
  let ws: WebSocket | null = null;
  let delay = 500;
  let stopped = false;
  const key = `terminal#${id}`;

  const sendResize = () => {
    // The size the page asks for, for a look from outside (the tests).
    box.dataset.cols = String(term.cols);
    box.dataset.rows = String(term.rows);
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  };
  term.onData((d) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  term.onBinary((d) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const b = new Uint8Array(d.length);
    for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
    ws.send(b);
  });
  term.onResize(sendResize);
  let resizeTimer: ReturnType<typeof setTimeout> | undefined;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => fit.fit(), 50);
  });

  const connect = () => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/api/runs/${encodeURIComponent(id)}/terminal?cols=${term.cols}&rows=${term.rows}`;
    const sock = new WebSocket(url);
    ws = sock;
    sock.binaryType = "arraybuffer";
    sock.onopen = () => {
      delay = 500;
      markDown(key, false);
      status.textContent = "connected";
      status.className = "ok";
      // tmux redraws the whole screen on attach.
      term.reset();
      sendResize();
      box.dataset.connected = "true";
    };
    sock.onmessage = (ev) => {
      if (typeof ev.data === "string") term.write(ev.data);
      else term.write(new Uint8Array(ev.data as ArrayBuffer));
    };
    sock.onclose = async (ev) => {
      if (ws !== sock) return;
      ws = null;
      box.dataset.connected = "false";
      const reason = ev.reason || (ev.code === 1006 ? "connection lost" : `closed (${ev.code})`);
      // A run that has ended has nothing to attach to: say why and stop.
      let running = true;
      try {
        const d = await get<RunDetail>(`/api/runs/${encodeURIComponent(id)}`);
        running = d.run.status === "running" || d.run.status === "creating";
      } catch {
        // Unreachable server: keep trying.
      }
      if (!running || stopped) {
        status.textContent = `${reason} — the run is not running`;
        status.className = "error";
        markDown(key, false);
        return;
      }
      markDown(key, true);
      status.textContent = `${reason}; reconnecting in ${Math.round(delay / 100) / 10}s…`;
      status.className = "warn";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  connect();
  window.addEventListener("beforeunload", () => {
    stopped = true;
    ws?.close(1000, "page closed");
  });
}

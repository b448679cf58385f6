// Tests of the page's API client against a real HTTP server on loopback
// (Node's fetch is the same WHATWG fetch the browser has).
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { APIError, get } from "../src/api";

// serve answers every request with handle, after dropping the connection
// of the first `drop` requests without an answer.
async function serve(drop: number, handle: (res: import("node:http").ServerResponse) => void): Promise<{ url: string; seen: () => number; close: () => void }> {
  let seen = 0;
  const srv: Server = createServer((req, res) => {
    seen++;
    if (seen <= drop) {
      req.socket.destroy();
      return;
    }
    handle(res);
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/api/x`, seen: () => seen, close: () => srv.close() };
}

test("get tries again a GET whose connection dropped, and returns the answer", async () => {
  const s = await serve(2, (res) => res.writeHead(200, { "Content-Type": "application/json" }).end('{"ok":true}'));
  try {
    assert.deepEqual(await get<{ ok: boolean }>(s.url, 10), { ok: true });
    assert.equal(s.seen(), 3);
  } finally {
    s.close();
  }
});

test("get gives up after four repeats, with fetch's own error", async () => {
  const s = await serve(100, () => {});
  try {
    await assert.rejects(get(s.url, 10), TypeError);
    assert.equal(s.seen(), 5);
  } finally {
    s.close();
  }
});

test("get shows the server's error at once, without repeating", async () => {
  const s = await serve(0, (res) => res.writeHead(409, { "Content-Type": "application/json" }).end('{"error":"the run is still running"}'));
  try {
    await assert.rejects(get(s.url, 10), (e: unknown) => e instanceof APIError && e.status === 409 && e.message === "the run is still running");
    assert.equal(s.seen(), 1);
  } finally {
    s.close();
  }
});

// Two headless Chromium pages call each other through the `nexrtc dev` demo page with
// relay-only ICE over one TURN transport; run by tests/dev_browser.rs.
//
//   BASE_URL=http://127.0.0.1:8080 TRANSPORT=udp|tcp|tls ROOM=r1 \
//   SCREENSHOT_DIR=target/e2e-screenshots CHROMIUM=/usr/bin/chromium node call.js
//
// Checks (exit 1 with the reason otherwise): both pages join the room, connect, open the
// data channel and receive every chat message of the other; each page's selected
// candidate pair has a local candidate of type `relay` allocated over TRANSPORT; the
// /status page shows the relay carrying the call's allocations. With TOKEN_REFRESHES=N
// (nexrtc dev --room-token-ttl short), each page must also have refreshed its room token
// N times with its signaling WebSocket still open and no token error. With
// EXPECT_HINT=text, Chromium keeps checking certificates (no --ignore-certificate-errors)
// and the check is only that the calling page shows a hint containing text. Prints
// one JSON line with what it measured (the Rust test compares it with the relay's
// /metrics). Every wait is bounded.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const BASE_URL = process.env.BASE_URL || "http://127.0.0.1:8080";
const TRANSPORT = process.env.TRANSPORT || "udp";
const ROOM = process.env.ROOM || `room-${TRANSPORT}-${process.pid}`;
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || "";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MESSAGES = Number(process.env.MESSAGES || 20);
const TOKEN_REFRESHES = Number(process.env.TOKEN_REFRESHES || 0);
const EXPECT_HINT = process.env.EXPECT_HINT || "";
const SIGNAL_DROP = process.env.SIGNAL_DROP === "1";
const MESSAGE_BYTES = 1000;
const STEP_TIMEOUT_MS = 30000;

function log(...args) {
  console.error(`[call.js ${TRANSPORT}]`, ...args);
}

async function until(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: STEP_TIMEOUT_MS, polling: 100 });
  } catch (e) {
    const state = await page.evaluate(() => ({
      me: window.nexrtc && window.nexrtc.me,
      errors: window.nexrtc && window.nexrtc.errors,
      state: document.getElementById("state").textContent,
    })).catch(() => ({}));
    throw new Error(`${what}: not within ${STEP_TIMEOUT_MS} ms; page: ${JSON.stringify(state)}`);
  }
}

function message(from, i) {
  const head = `${from}#${i}:`;
  return head + "x".repeat(MESSAGE_BYTES - head.length);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox", // CI runs as root
      "--disable-gpu",
      // The dev relay's TLS certificate is self-signed.
      ...(EXPECT_HINT ? [] : ["--ignore-certificate-errors"]),
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 820 } });
    const url = `${BASE_URL}/?room=${encodeURIComponent(ROOM)}&transport=${TRANSPORT}`;
    const pages = [];
    for (const name of ["a", "b"]) {
      const page = await context.newPage();
      page.on("console", (m) => { if (m.type() === "error") log(`${name} console:`, m.text()); });
      page.on("pageerror", (e) => log(`${name} page error:`, e.message));
      // "load" waits for every subresource and, on a busy 2-core machine, can be late:
      // the page's script runs at DOMContentLoaded, and the step below checks it joined.
      await page.goto(url, { waitUntil: "domcontentloaded", timeout: 2 * STEP_TIMEOUT_MS });
      // The second page joins after the first is in the room: it is the one that offers.
      await until(page, `${name} joins ${ROOM}`, () => window.nexrtc && window.nexrtc.me);
      pages.push(page);
    }
    const [a, b] = pages;
    if (EXPECT_HINT) {
      // b offers, so b gathers candidates and meets the relay's certificate.
      await until(b, `b shows a hint containing ${JSON.stringify(EXPECT_HINT)}`,
        (text) => window.nexrtc.hints.some((h) => h.includes(text)) &&
          document.getElementById("hint").textContent.includes(text), EXPECT_HINT);
      const hints = await b.evaluate(() => window.nexrtc.hints);
      console.log(JSON.stringify({ transport: TRANSPORT, room: ROOM, hints }));
      return;
    }
    for (const [name, page] of [["a", a], ["b", b]]) {
      await until(page, `${name} connects and opens the data channel`, () => {
        const peer = [...window.nexrtc.peers.values()][0];
        return peer && peer.pc.connectionState === "connected" && peer.channel && peer.channel.readyState === "open";
      });
    }
    const ids = [];
    for (const page of pages) ids.push(await page.evaluate(() => window.nexrtc.me));

    // Chat both ways, then wait until each side has everything the other sent.
    for (const [from, page] of [["a", a], ["b", b]]) {
      await page.evaluate(({ from, n, size }) => {
        for (let i = 0; i < n; i++) {
          const head = `${from}#${i}:`;
          if (window.nexrtc.sendChat(head + "x".repeat(size - head.length)) !== 1) throw new Error("no open channel");
        }
      }, { from, n: MESSAGES, size: MESSAGE_BYTES });
    }
    // And one short line each, which the chat panel shows.
    for (const [from, page] of [["a", a], ["b", b]]) {
      await page.evaluate((text) => window.nexrtc.sendChat(text), `hello from ${from}, over TURN/${TRANSPORT}`);
    }
    await until(a, "a receives every message of b", (n) => window.nexrtc.received.length >= n, MESSAGES + 1);
    await until(b, "b receives every message of a", (n) => window.nexrtc.received.length >= n, MESSAGES + 1);
    for (const [name, page, other] of [["a", a, "b"], ["b", b, "a"]]) {
      const got = await page.evaluate(() => window.nexrtc.received.map((m) => m.text));
      for (let i = 0; i < MESSAGES; i++) {
        if (got[i] !== message(other, i)) throw new Error(`${name}: message ${i} of ${other} wrong or missing`);
      }
      if (got[MESSAGES] !== `hello from ${other}, over TURN/${TRANSPORT}`) throw new Error(`${name}: no hello from ${other}`);
    }

    // Signaling lost mid-call: a's WebSocket drops; the page reconnects (fresh token,
    // backoff) and rejoins the room, the call goes on, and b keeps it despite peer-left.
    let signalReconnects = null;
    if (SIGNAL_DROP) {
      await a.evaluate(() => window.nexrtc.dropSignal());
      await until(a, "a reconnects its signaling and rejoins", () =>
        window.nexrtc.reconnects >= 1 && window.nexrtc.signalOpen() && window.nexrtc.signalState === "joined");
      for (const [from, page] of [["a", a], ["b", b]]) {
        await page.evaluate((text) => window.nexrtc.sendChat(text), `after the reconnect, from ${from}`);
      }
      for (const [name, page, other] of [["a", a, "b"], ["b", b, "a"]]) {
        await until(page, `${name} gets ${other}'s message sent after the reconnect`,
          (text) => window.nexrtc.received.some((m) => m.text === text), `after the reconnect, from ${other}`);
        const state = await page.evaluate(() => [...window.nexrtc.peers.values()].map((p) => p.pc.connectionState));
        if (state.length !== 1 || state[0] !== "connected") throw new Error(`${name}: call not kept: ${state}`);
      }
      signalReconnects = await a.evaluate(() => window.nexrtc.reconnects);
    }

    // The call outlives its room tokens: the pages refresh them on the open WebSocket.
    const tokenRefreshes = [];
    if (TOKEN_REFRESHES > 0) {
      for (const [name, page] of [["a", a], ["b", b]]) {
        await until(page, `${name} refreshes its room token ${TOKEN_REFRESHES} times`,
          (n) => window.nexrtc.tokenRefreshes >= n, TOKEN_REFRESHES);
        const seen = await page.evaluate(() => ({
          open: window.nexrtc.signalOpen(),
          refreshes: window.nexrtc.tokenRefreshes,
          tokenErrors: window.nexrtc.errors.filter((e) => /token_expired|revoked|refresh_refused/.test(e)),
        }));
        if (!seen.open) throw new Error(`${name}: the signaling WebSocket closed`);
        if (seen.tokenErrors.length) throw new Error(`${name}: ${seen.tokenErrors.join("; ")}`);
        tokenRefreshes.push(seen.refreshes);
      }
    }

    // Let some video flow, then read the selected candidate pairs.
    await until(a, "a shows the remote video", () => {
      const v = document.getElementById("remote");
      return v.readyState >= 2 && v.videoWidth > 0;
    });
    await a.waitForTimeout(1500);
    const pairs = [];
    for (const [name, page] of [["a", a], ["b", b]]) {
      const pair = await page.evaluate(() => window.nexrtc.selectedPair());
      if (!pair) throw new Error(`${name}: no selected candidate pair`);
      if (pair.local.type !== "relay") throw new Error(`${name}: local candidate is ${pair.local.type}, not relay`);
      if (pair.local.relayProtocol !== TRANSPORT) {
        throw new Error(`${name}: relay candidate allocated over ${pair.local.relayProtocol}, not ${TRANSPORT}`);
      }
      pairs.push(pair);
    }

    if (SCREENSHOT_DIR) {
      fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
      await until(a, "a shows its stats", () => document.getElementById("stats").textContent.startsWith("relay:"));
      await a.screenshot({ path: path.join(SCREENSHOT_DIR, `demo-${TRANSPORT}.png`) });
      const status = await context.newPage();
      await status.goto(`${BASE_URL}/status`, { waitUntil: "domcontentloaded", timeout: 2 * STEP_TIMEOUT_MS });
      // The relay's heartbeats report the call's allocations (one per page).
      await until(status, "the status page shows the call's allocations",
        () => Number(document.body.dataset.allocations || 0) >= 2);
      await status.screenshot({ path: path.join(SCREENSHOT_DIR, `status-${TRANSPORT}.png`) });
      await status.close();
    }

    // Each page measured the relays with /nexrtc-probe.js and reported.
    const probes = [];
    for (const [name, page] of [["a", a], ["b", b]]) {
      await until(page, `${name} finishes its relay probe`, () => window.nexrtc.probe !== null);
      probes.push(await page.evaluate(() => window.nexrtc.probe));
    }

    const result = {
      probes,
      transport: TRANSPORT,
      room: ROOM,
      participants: ids,
      messages_each_way: MESSAGES,
      chat_bytes_each_way: MESSAGES * MESSAGE_BYTES,
      pairs,
      bytes_sent_total: pairs.reduce((sum, p) => sum + (p.bytesSent || 0), 0),
      token_refreshes: tokenRefreshes,
      signal_reconnects: signalReconnects,
    };
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  log("FAILED:", e && e.message ? e.message : e);
  process.exit(1);
});

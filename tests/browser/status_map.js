// The controller's /status page in headless Chromium: its world map shows every region
// coloured by health, each region's relays, and the relay mesh's lines with their RTTs;
// its usage chart, the tenant's reported minutes and bytes; run by tests/status_map.rs.
//
//   BASE_URL=http://127.0.0.1:8080 ADMIN_KEY=nxk_… EXPECT='{"regions": {"eu-west": "ok"}, …}' \
//   SCREENSHOT=target/e2e-screenshots/status-map.png CHROMIUM=/usr/bin/chromium node status_map.js
//
// EXPECT: {"regions": {name: "ok" | "some" | "none"}, "relays": N, "links": N, "rtts": ["12 ms", …],
//          "usage": {"tenant": name, "bytes": N, "minutes": N}}.
// Exits 1 with the reason when the page differs; prints one JSON line of what it saw.
"use strict";
const { chromium } = require("playwright-core");

const BASE_URL = process.env.BASE_URL;
const ADMIN_KEY = process.env.ADMIN_KEY;
const EXPECT = JSON.parse(process.env.EXPECT);
const SCREENSHOT = process.env.SCREENSHOT || "";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    // The page takes the admin key from sessionStorage, as when an operator types it.
    await page.addInitScript((key) => sessionStorage.setItem("nexrtc-admin-key", key), ADMIN_KEY);
    await page.goto(BASE_URL + "/status", { timeout: 30000 });
    await page.waitForFunction(() => document.body.dataset.loaded === "true" &&
      document.body.dataset.usageLoaded === "true", null, { timeout: 30000, polling: 100 });
    const seen = await page.evaluate(() => ({
      land: document.querySelectorAll("#map path.land").length,
      regions: Object.fromEntries([...document.querySelectorAll("#map circle.region")]
        .map((c) => [c.dataset.region, c.dataset.health])),
      relays: document.querySelectorAll("#map circle.relay").length,
      links: document.querySelectorAll("#map line.link").length,
      rtts: [...document.querySelectorAll("#map text.rtt")].map((t) => t.textContent).sort(),
      // Keys in the order serde_json writes them (sorted), for the comparison below.
      usage: { bytes: Number(document.body.dataset.usageBytes),
        minutes: document.querySelectorAll("#usage-bars g").length,
        tenant: document.getElementById("tenant").value },
    }));
    if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(JSON.stringify(seen));
    const problems = [];
    if (seen.land !== 1) problems.push(`land paths: ${seen.land}`);
    if (JSON.stringify(seen.regions) !== JSON.stringify(EXPECT.regions))
      problems.push(`regions ${JSON.stringify(seen.regions)} != ${JSON.stringify(EXPECT.regions)}`);
    if (seen.relays !== EXPECT.relays) problems.push(`relay dots ${seen.relays} != ${EXPECT.relays}`);
    if (seen.links !== EXPECT.links) problems.push(`links ${seen.links} != ${EXPECT.links}`);
    if (JSON.stringify(seen.usage) !== JSON.stringify(EXPECT.usage))
      problems.push(`usage ${JSON.stringify(seen.usage)} != ${JSON.stringify(EXPECT.usage)}`);
    if (JSON.stringify(seen.rtts) !== JSON.stringify(EXPECT.rtts))
      problems.push(`rtt labels ${JSON.stringify(seen.rtts)} != ${JSON.stringify(EXPECT.rtts)}`);
    if (problems.length) throw new Error(problems.join("; "));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});

// Drives Debian's chromium through playwright-core for tests/browser (no browser download).
//
//   node drive.mjs report URL SCREENSHOT   -> JSON: console errors, page errors, requests made,
//                                             verdict text, bars per dimension
//   node drive.mjs rotate URL SECONDS      -> JSON: the pod names the page showed, reload by reload
//
// Headless, --no-sandbox (tests run as root), background networking and component updates off.
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const [mode, url, arg] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
  ],
});
const out = { console: [], pageErrors: [], requests: [], failed: [] };
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 1000 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") out.console.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  page.on("request", (r) => out.requests.push(r.url()));
  page.on("requestfailed", (r) => out.failed.push(`${r.url()} ${r.failure()?.errorText}`));
  if (mode === "report") {
    await page.goto(url, { waitUntil: "load" });
    out.title = await page.title();
    out.verdict = await page.locator("#verdict").innerText();
    out.verdictColour = await page.locator("#verdict").evaluate((e) => getComputedStyle(e).backgroundColor);
    out.bars = await page.$$eval(".dimension", (sections) =>
      Object.fromEntries(sections.map((s) => [s.dataset.dimension, [...s.querySelectorAll("g.bar")].map((g) => g.dataset.group)])));
    out.visibleBars = await page.locator('.dimension[data-dimension="pod"] rect.share').evaluateAll(
      (rects) => rects.filter((r) => r.getBoundingClientRect().width > 0).length);
    await page.screenshot({ path: arg, fullPage: true });
    out.screenshot = arg;
  } else if (mode === "rotate") {
    // The identity page reloads itself every second (?refresh=1): read its own text each time.
    out.pods = [];
    const deadline = Date.now() + Number(arg) * 1000;
    page.on("load", async () => {
      try {
        const text = await page.locator("body").innerText();
        const m = text.match(/^Pod\s+(\S+)/m);
        if (m) out.pods.push(m[1]);
      } catch (e) { /* navigated away mid-read: the next load reads again */ }
    });
    await page.goto(url, { waitUntil: "load" });
    while (Date.now() < deadline && new Set(out.pods).size < 2) await page.waitForTimeout(100);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");

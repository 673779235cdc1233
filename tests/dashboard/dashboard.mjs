// Drives the Runtime's dashboard in Debian's headless Chromium with playwright-core. Started by
// crates/dolittle-runtime/tests/dashboard.rs (run it with tests/dashboard/run.sh), which has a
// Runtime running with a partitioned event handler whose partition "b" is failing.
//
// Environment: DASHBOARD_URL, HANDLER_ID, FAILURE_REASON, SCREENSHOT_DIR.
// Exits 0 when every check passed, 1 with a message otherwise.
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.DASHBOARD_URL;
const handler = process.env.HANDLER_ID;
const expectedReason = process.env.FAILURE_REASON;
const screenshots = process.env.SCREENSHOT_DIR;
if (!url || !handler || !expectedReason || !screenshots) {
  console.error("DASHBOARD_URL, HANDLER_ID, FAILURE_REASON and SCREENSHOT_DIR must be set");
  process.exit(1);
}
mkdirSync(screenshots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const userDataDir = mkdtempSync(join(tmpdir(), "dolittle-dashboard-"));
const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 700 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const pageErrors = [];
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(20000);
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(url);

  const row = page.locator(`#processor-table tr[data-processor="${handler}"]`);
  const reason = row.locator('.failing-partition[data-partition="b"] .reason');
  await reason.waitFor();
  check((await reason.textContent()) === expectedReason, `the reason shown is ${await reason.textContent()}`);
  check((await row.getAttribute("data-state")) === "failing", "the handler is shown failing");
  const before = Number(await row.locator("td.position").textContent());
  check(before === 3, `the position before the replay is ${before}`);
  console.log(`failing partition b found: "${expectedReason}", position ${before}`);
  await page.screenshot({ path: join(screenshots, "dashboard.png") });

  await row.locator("input.replay-from").fill("0");
  await row.locator("button.replay").click();
  await page.waitForFunction(
    (id) => document.querySelector(`#processor-table tr[data-processor="${id}"] td.position`)?.textContent === "0",
    handler,
  );
  console.log("replay pressed: the position went back to 0");
  await page.screenshot({ path: join(screenshots, "dashboard-after-replay.png") });

  await page.locator('nav button[data-tab="events"]').click();
  const last = page.locator('#event-table tr[data-sequence-number="2"] pre.json');
  await last.waitFor();
  const content = JSON.parse(await last.textContent());
  check(content.source === "a", `the event log shows the content as JSON: ${await last.textContent()}`);
  console.log("event log browser shows the events as formatted JSON");
  await page.screenshot({ path: join(screenshots, "dashboard-event-log.png") });
  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join("; ")}`);
  console.log("dashboard: 4 passed, 0 failed");
} catch (error) {
  console.error(`dashboard check failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

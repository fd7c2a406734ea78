// Drives web/ in headless Chromium (playwright-core, found through NODE_PATH).
// Usage: node page_test.cjs BASE_URL SCREENSHOT_PATH PROFILE_DIR
// Prints "PAGE OK ..." and exits 0 when every check holds; exits 1 otherwise.
"use strict";
const { chromium } = require("playwright-core");

const [base, shot, profile] = process.argv.slice(2);
const T = 30000;

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function seqs(page) {
  return page.evaluate(() => window.agentdPage.seqs());
}

async function main() {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1200, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    await page.goto(base + "/", { timeout: T });
    check((await page.title()) === "agentd", "title");
    // Pick the team and submit a task.
    await page.waitForSelector("#team option[value=web]", { state: "attached", timeout: T });
    await page.selectOption("#team", "web");
    await page.fill("#task", "Summarise the quarterly numbers");
    await page.click("#submit");
    // The plan awaits approval; its steps are shown.
    await page.waitForSelector("#approve", { state: "visible", timeout: T });
    await page.waitForFunction(() => document.querySelectorAll("#steps li").length === 2, null, { timeout: T });
    check((await page.textContent("#plan-status")) === "awaiting_approval", "status awaiting_approval");
    const planId = await page.evaluate(() => window.agentdPage.state.planId);
    check(/^#plan=/.test(await page.evaluate(() => location.hash)), "plan id in the URL");
    await page.click("#approve");

    // Live messages arrive; drop the socket once: it comes back by itself.
    await page.waitForFunction(() => window.agentdPage.seqs().length >= 4, null, { timeout: T });
    await page.evaluate(() => window.agentdPage.dropSocket());
    await page.waitForFunction(() => window.agentdPage.state.reconnects >= 1, null, { timeout: T });
    const before = (await seqs(page)).length;
    await page.waitForFunction((n) => window.agentdPage.seqs().length > n, before, { timeout: T });
    const liveStats = await page.evaluate(() => ({ ...window.agentdPage.state, ws: undefined }));
    check(liveStats.duplicates === 0 && liveStats.gaps === 0, "no duplicate/gap before reload");

    // Reload mid-run: history from REST, then the socket from the last seq.
    const atReload = (await seqs(page)).length;
    await page.reload({ timeout: T });
    await page.waitForFunction(() => window.agentdPage && window.agentdPage.seqs().length > 0, null, { timeout: T });
    await page.waitForSelector("#final", { state: "visible", timeout: T });
    check((await page.textContent("#plan-status")) === "completed", "status completed");

    const got = await seqs(page);
    const st = await page.evaluate(() => ({ ...window.agentdPage.state, ws: undefined }));
    // The complete log (the paging endpoint) and GET /plan's chat view.
    const { rest, chat } = await page.evaluate(async (id) => {
      const r = await fetch("/api/v3/plan/" + encodeURIComponent(id) + "/messages?after_seq=0");
      const j = await r.json();
      const c = await (await fetch("/api/v3/plan?plan_id=" + encodeURIComponent(id))).json();
      return {
        rest: j.messages.map((m) => [m.seq, m.type]),
        chat: c.messages.map((m) => [m.seq, JSON.parse(m.raw_data).type, m.content]),
      };
    }, planId);
    check(got.length === rest.length, `page shows ${got.length} messages, REST has ${rest.length}`);
    rest.forEach(([s], i) => check(s === i + 1, `REST seq ${s} at position ${i}`));
    // The chat: the 8 agent messages and the final result, each a message of the log.
    check(chat.length === 9, `chat view has ${chat.length} entries`);
    chat.forEach(([s, t]) => check(rest[s - 1] && rest[s - 1][1] === t, `chat entry seq ${s} (${t}) is in the log`));
    check(chat[8][1] === "final_result_message" && chat[8][2].startsWith("\u{1F389}"), "chat ends with the final result");
    got.forEach((s, i) => check(s === i + 1, `seq ${s} at position ${i}`));
    check(st.duplicates === 0 && st.gaps === 0, `duplicates ${st.duplicates} gaps ${st.gaps}`);
    // After the reload, what existed came from REST (the complete log), not a socket replay.
    check(st.history >= atReload, `${st.history} messages from REST history after the reload (${atReload} before it)`);
    // The approval request is read from data.plan (MACAE's PlanApprovalRequest).
    const asked = await page.$eval('#messages li[data-type="plan_approval_request"] .body', (b) => b.textContent);
    check(asked === "2 steps proposed", `approval request shown as "${asked}"`);
    check(rest[rest.length - 1][1] === "final_result_message", "last message is the final result");
    check(atReload < rest.length, `reload happened mid-run (${atReload} of ${rest.length})`);
    const types = await page.$$eval("#messages li", (ls) => ls.map((l) => l.dataset.type));
    check(types.filter((t) => t === "agent_message").length === 8, "8 agent messages");
    check((await page.textContent("#final-text")).length > 0, "final text");

    // Past plans list the plan.
    await page.click("#refresh-plans");
    await page.waitForSelector(`#plans li[data-plan-id="${planId}"]`, { timeout: T });
    await page.screenshot({ path: shot, fullPage: true });
    check(errors.length === 0, "page errors: " + errors.join("; "));
    console.log(`PAGE OK plan=${planId} messages=${got.length} reload_at=${atReload} reconnects_before_reload=${liveStats.reconnects}`);
  } catch (e) {
    try {
      await page.screenshot({ path: shot, fullPage: true });
    } catch (_) {}
    console.log("PAGE FAILED: " + e.message + (errors.length ? "\npage errors: " + errors.join("; ") : ""));
    process.exitCode = 1;
  } finally {
    await ctx.close();
  }
}

main().catch((e) => {
  console.log("PAGE FAILED: " + e.stack);
  process.exit(1);
});

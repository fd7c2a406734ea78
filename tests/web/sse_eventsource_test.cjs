// The browser's own EventSource against GET /api/v3/plan/{plan_id}/events
// (issue 17), in headless Chromium (playwright-core from NODE_PATH), closed
// by the server twice while the plan goes on:
//  1. as a slow consumer: agentd runs with a 2-frame send queue, and an
//     external agent posts bursts of messages to the plan (awaiting approval);
//  2. by a SIGKILL of agentd mid-run, restarted on the same port and data
//     folder (the plan then resumes where it stopped, issue 15, and completes).
// Each time EventSource reconnects by itself with Last-Event-ID, and the page
// ends with every seq 1..N exactly once, in order, N being what the paging
// endpoint holds.
// Usage (ctest sets these): AGENTD_BINARY=... node sse_eventsource_test.cjs
// Prints "SSE EVENTSOURCE OK ..." and exits 0 when every check holds.
"use strict";
const { chromium } = require("playwright-core");
const { spawn } = require("child_process");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const T = 30000;
const bin = process.env.AGENTD_BINARY;

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function healthy(base, until) {
  while (Date.now() < until) {
    try {
      const r = await fetch(base + "/healthz");
      if (r.ok) return;
    } catch (_) {}
    await sleep(50);
  }
  throw new Error("agentd did not become healthy");
}

async function post(base, planId, content) {
  const r = await fetch(base + "/api/v3/agent_message", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ plan_id: planId, agent: "External", content }),
  });
  check(r.status === 200, "agent_message: " + r.status);
}

async function main() {
  check(bin && fs.existsSync(bin), "AGENTD_BINARY names the agentd binary");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agentd-sse-es-"));
  fs.mkdirSync(path.join(dir, "teams"));
  // Two script agents, 6 messages each, 250 ms apart: a few seconds of stream.
  fs.writeFileSync(path.join(dir, "teams", "t.json"), JSON.stringify({
    team_id: "t", name: "T", description: "EventSource test", agents: [
      { name: "A", type: "script", description: "a", script: { messages: 6, delay_ms: 250 } },
      { name: "B", type: "script", description: "b", script: { messages: 6, delay_ms: 250 } },
    ],
  }));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(dir, "agentd.log"), "a");
  const start = () => spawn(bin, ["--listen", `127.0.0.1:${port}`, "--data-dir", path.join(dir, "data"),
    "--teams-dir", path.join(dir, "teams"), "--ws-queue-frames", "2", "--log-level", "info"], { stdio: ["ignore", log, log] });
  let agentd = start();
  let ctx;
  try {
    await healthy(base, Date.now() + 20000);
    ctx = await chromium.launchPersistentContext(path.join(dir, "chromium"), {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
    });
    const page = ctx.pages()[0] || (await ctx.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(base + "/healthz", { timeout: T });
    const planId = await page.evaluate(async () => {
      const r = await fetch("/api/v3/process_request", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ description: "EventSource test", team_id: "t", auto_approve: false }),
      });
      const { plan_id } = await r.json();
      const types = ["plan_approval_request", "plan_approval_response", "agent_message", "agent_message_streaming",
        "user_clarification_request", "user_clarification_response", "final_result_message", "system_message",
        "error_message", "timeout_notification", "message"];
      window.sse = { got: [], opens: 0, errors: 0, terminal: false, bad: [] };
      window.closeStream = () => es.close();
      window.planId = plan_id;
      const es = new EventSource("/api/v3/plan/" + encodeURIComponent(plan_id) + "/events");
      es.onopen = () => window.sse.opens++;
      es.onerror = () => window.sse.errors++;
      for (const t of types) {
        es.addEventListener(t, (e) => {
          const env = JSON.parse(e.data);
          if (String(env.seq) !== e.lastEventId) window.sse.bad.push(`id ${e.lastEventId} for seq ${env.seq}`);
          window.sse.got.push({ seq: env.seq, type: e.type });
          if (t === "error_message" || t === "final_result_message") window.sse.terminal = true;
        });
      }
      return plan_id;
    });
    const storedNow = async () => {
      const r = await fetch(base + "/api/v3/plan/" + encodeURIComponent(planId) + "/messages?limit=10000");
      return (await r.json()).messages.map((m) => [m.seq, m.type]);
    };
    await page.waitForFunction(() => window.sse.got.length >= 1, null, { timeout: T });  // the approval request
    // 1. Bursts of external messages: with a 2-frame queue the stream falls
    // behind and is closed as a slow consumer; EventSource comes back.
    for (let burst = 0; burst < 8; burst++) {
      await Promise.all(Array.from({ length: 15 }, (_, i) => post(base, planId, `burst ${burst} message ${i}`)));
    }
    let stored = await storedNow();
    await page.waitForFunction((n) => window.sse.got.length >= n, stored.length, { timeout: 45000 });
    const metrics = await (await fetch(base + "/metrics")).text();
    const slow = Number((metrics.match(/^agentd_sse_slow_consumers_closed_total (\d+)/m) || [0, 0])[1]);
    const opensAfterSlow = await page.evaluate(() => window.sse.opens);
    check(slow >= 1 && opensAfterSlow >= 2, `closed as a slow consumer (${slow}) and reopened (${opensAfterSlow} opens)`);
    // 2. Approve; mid-run, kill agentd and start it again on the same port.
    const ap = await fetch(base + "/api/v3/plan_approval", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ m_plan_id: planId, approved: true }),
    });
    check(ap.status === 200, "approval: " + ap.status);
    await page.waitForFunction((n) => window.sse.got.length >= n + 3, stored.length, { timeout: T });
    const atKill = await page.evaluate(() => window.sse.got.length);
    agentd.kill("SIGKILL");
    await new Promise((r) => agentd.once("exit", r));
    await sleep(300);
    agentd = start();
    await healthy(base, Date.now() + 20000);
    // The restart resumed the plan: the stream ends after its final result.
    await page.waitForFunction(() => window.sse.terminal, null, { timeout: 45000 });
    stored = await storedNow();
    await sleep(500);  // a duplicate would arrive now
    await page.evaluate(() => window.closeStream());
    const st = await page.evaluate(() => window.sse);
    check(st.bad.length === 0, "ids match seqs: " + st.bad.join("; "));
    check(st.opens >= 2 && st.errors >= 1, `reconnected by itself (opens ${st.opens}, errors ${st.errors})`);
    check(st.got.length === stored.length, `page got ${st.got.length} events, the plan holds ${stored.length}`);
    st.got.forEach((g, i) => check(g.seq === i + 1 && g.type === stored[i][1], `seq ${g.seq} at position ${i}`));
    const last = stored[stored.length - 1][1];
    check(last === "final_result_message", "the plan resumed and completed: " + last);
    check(stored.slice(atKill - 1).some((m) => m[1] === "system_message"), "the resume is in the stream");
    check(st.opens >= opensAfterSlow + 1, "reconnected after the restart");
    check(atKill < stored.length, `the kill happened mid-stream (${atKill} of ${stored.length})`);
    check(errors.length === 0, "page errors: " + errors.join("; "));
    // And the /docs page renders the document with the embedded Swagger UI
    // (nothing fetched from anywhere but agentd).
    const foreign = [];
    page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreign.push(r.url()); });
    await page.goto(base + "/docs", { timeout: T });
    await page.waitForSelector(".swagger-ui .info .title", { timeout: T });
    check((await page.textContent(".swagger-ui .info .title")).includes("agentd API"), "docs title");
    await page.waitForFunction(() => document.querySelectorAll(".opblock").length > 30, null, { timeout: T });
    const ops = await page.evaluate(() => document.querySelectorAll(".opblock").length);
    check(foreign.length === 0, "the docs page fetched " + foreign.join(", "));
    if (process.env.AGENTD_DOCS_SHOT) await page.screenshot({ path: process.env.AGENTD_DOCS_SHOT });
    check(errors.length === 0, "page errors: " + errors.join("; "));
    console.log(`DOCS OK operations=${ops}`);
    console.log(`SSE EVENTSOURCE OK plan=${planId} events=${st.got.length} slow_closes=${slow} killed_at=${atKill} opens=${st.opens} last=${last}`);
  } catch (e) {
    console.log("SSE EVENTSOURCE FAILED: " + e.message + "\nagentd log (tail):\n" +
      fs.readFileSync(path.join(dir, "agentd.log"), "utf8").slice(-3000));
    process.exitCode = 1;
  } finally {
    if (ctx) await ctx.close();
    agentd.kill("SIGTERM");
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.log("SSE EVENTSOURCE FAILED: " + e.stack);
  process.exit(1);
});

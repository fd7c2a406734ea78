// A tiny HTTP + WebSocket load balancer for tests (issue 16): every request
// and every WebSocket goes to a backend picked at random, so consecutive
// requests of one page (and its socket) land on different agentd instances.
//
// Requests: method, path, headers and body are sent to the backend and its
// answer (status, headers, body, streamed: SSE works) is copied back; the
// hop-by-hop headers (Connection, Keep-Alive, Transfer-Encoding, ...) are
// each side's own. Upgrades: the raw request is written to a random backend
// and the two sockets are piped both ways.
//
// A backend that refuses the connection is skipped for another, as a real
// balancer's health check would skip an instance that is down (the tests
// kill one); any other failure is the client's (502 / a closed socket).
//
// As a module: `const lb = await startRandomLb(() => backends)`, where each
// backend is {host, port}; the function is asked on every pick (a test may
// change the set); `lb.port`, `lb.picks` (per "host:port", a count), and
// `await lb.close()`. Standalone: `node random_lb.cjs PORT HOST:PORT...`.
"use strict";
const http = require("http");
const net = require("net");

const kMaxBody = 16 * 1024 * 1024; // a request body is held for a retry; bounded
const kHopByHop = new Set([
  "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade",
]);

// The backends in a random order (Fisher-Yates).
function shuffled(list) {
  const a = list.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const refused = (e) => e && e.code === "ECONNREFUSED";

// Copies a header list (Node's flat rawHeaders) without the hop-by-hop ones.
function endToEnd(raw) {
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!kHopByHop.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

function startRandomLb(backends, opts = {}) {
  const picks = {};
  const sockets = new Set();
  const count = (b) => (picks[`${b.host}:${b.port}`] = (picks[`${b.host}:${b.port}`] || 0) + 1);

  function onRequest(req, res) {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > kMaxBody) {
        res.writeHead(413, { "content-type": "text/plain" }).end("random_lb: request body too large\n");
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => forward(req, res, Buffer.concat(chunks), shuffled(backends())));
  }

  function forward(req, res, body, order) {
    const b = order.shift();
    if (!b) {
      res.writeHead(502, { "content-type": "text/plain" }).end("random_lb: no backend answers\n");
      return;
    }
    let connected = false;
    const headers = endToEnd(req.rawHeaders);
    // A chunked body arrives whole: it goes on with its length.
    if (body.length && !headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === "content-length")) {
      headers.push("Content-Length", String(body.length));
    }
    const up = http.request({ host: b.host, port: b.port, method: req.method, path: req.url, headers, agent: false });
    up.on("socket", (s) => s.on("connect", () => (connected = true)));
    up.on("response", (r) => {
      count(b);
      res.writeHead(r.statusCode, r.statusMessage, endToEnd(r.rawHeaders));
      r.pipe(res);
      r.on("error", () => res.destroy());
    });
    up.on("error", (e) => {
      if (!connected && refused(e) && !res.headersSent) return forward(req, res, body, order);
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end(`random_lb: ${e.message}\n`);
      else res.destroy();
    });
    res.on("close", () => up.destroy());
    up.end(body);
  }

  function onUpgrade(req, client, head) {
    client.on("error", () => {});
    const order = shuffled(backends());
    const raw = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) raw.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    const preamble = Buffer.concat([Buffer.from(raw.join("\r\n") + "\r\n\r\n"), head]);
    const attempt = () => {
      const b = order.shift();
      if (!b) return client.destroy();
      const up = net.connect(b.port, b.host);
      let connected = false;
      up.on("connect", () => {
        connected = true;
        count(b);
        sockets.add(up);
        up.on("close", () => sockets.delete(up));
        up.write(preamble);
        up.pipe(client);
        client.pipe(up);
      });
      up.on("error", (e) => {
        if (!connected && refused(e)) return attempt();
        client.destroy();
      });
      up.on("close", () => client.destroy());
      client.on("close", () => up.destroy());
    };
    attempt();
  }

  const server = http.createServer(onRequest);
  server.keepAliveTimeout = 5000;
  server.on("upgrade", onUpgrade);
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.on("error", reject);
    server.listen(opts.port || 0, opts.host || "127.0.0.1", () => {
      resolve({
        port: server.address().port,
        picks,
        close: () =>
          new Promise((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

module.exports = { startRandomLb };

if (require.main === module) {
  const [port, ...targets] = process.argv.slice(2);
  if (!port || targets.length === 0) {
    console.error("usage: node random_lb.cjs PORT HOST:PORT...");
    process.exit(2);
  }
  const list = targets.map((t) => {
    const i = t.lastIndexOf(":");
    return { host: t.slice(0, i), port: Number(t.slice(i + 1)) };
  });
  startRandomLb(() => list, { port: Number(port) }).then((lb) => console.log(`random_lb listening on ${lb.port}`));
}

// The seed's stack, for comparison in `make bench`: Node's cluster module with
// one express worker per core, a dead worker replaced, SIGTERM drained.
// Routes match tests/bench/bench_routes.py: /cpu (JSON of 300 records) and /io (waits 50 ms).
"use strict";

const cluster = require("node:cluster");
const os = require("node:os");
const express = require("express");

const PORT = Number(process.env.PORT || 8000);
const WORKERS = Number(process.env.WEB_CONCURRENCY || os.availableParallelism());
// Requests in flight get this long after SIGTERM, like GRACEFUL_TIMEOUT.
const GRACEFUL_TIMEOUT_MS = 10_000;

// A few hundred small objects, as a typical JSON API response carries.
const RECORDS = Array.from({ length: 300 }, (_, i) => ({ id: i, name: `item-${i}`, price: i * 1.5, tags: ["a", "b"] }));

if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let stopping = false;
  cluster.on("exit", (worker, code, signal) => {
    if (!stopping) {
      console.log(JSON.stringify({ level: "warn", message: `worker ${worker.process.pid} died (${signal || code}); replacing it` }));
      cluster.fork();
    } else if (Object.keys(cluster.workers).length === 0) {
      process.exit(0);
    }
  });
  process.on("SIGTERM", () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.process.kill("SIGTERM");
    setTimeout(() => process.exit(1), GRACEFUL_TIMEOUT_MS).unref();
  });
} else {
  const app = express();
  app.disable("x-powered-by");
  app.get("/health", (req, res) => res.json({ status: "pass" }));
  app.get("/cpu", (req, res) => res.json(RECORDS));
  app.get("/io", (req, res) => setTimeout(() => res.json({ waited_ms: 50 }), 50));
  const server = app.listen(PORT, "127.0.0.1");
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

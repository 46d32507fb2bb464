// The seed's stack, for comparison in `make bench`: Node's cluster module with
// one express worker per core, a dead worker replaced, SIGTERM drained.
// Routes match tests/bench/bench_routes.py: /cpu (JSON of 300 records) and /io (waits 50 ms);
// with DATABASE_URL, /db/:id as tests/bench/bench_db_routes.py (one row by primary key).
"use strict";

const cluster = require("node:cluster");
const os = require("node:os");
const express = require("express");
const { Pool } = require("pg");

const PORT = Number(process.env.PORT || 8000);
const WORKERS = Number(process.env.WEB_CONCURRENCY || os.availableParallelism());
// Connections each worker's pool may hold: pg.Pool's own default, written out.
const POOL_SIZE = 10;
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
  app.get("/trivial", (req, res) => res.json({ ok: true }));
  app.get("/cpu", (req, res) => res.json(RECORDS));
  app.get("/io", (req, res) => setTimeout(() => res.json({ waited_ms: 50 }), 50));
  if (process.env.DATABASE_URL) {
    // One pool per worker, opened on demand, as each Python worker has its own.
    const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: POOL_SIZE });
    // Express 5 hands a rejected promise (a failed query) to its error handler: a 500.
    app.get("/db/:id", async (req, res) => {
      const { rows } = await pool.query("SELECT id, name, price FROM bench_rows WHERE id = $1", [Number(req.params.id)]);
      if (rows.length === 0) return res.status(404).json({ title: "no such row" });
      res.json(rows[0]);
    });
  }
  const server = app.listen(PORT, "127.0.0.1");
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

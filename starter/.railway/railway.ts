// Railway infrastructure as code for My Service: `railway config plan`, then `railway config apply`.
// Sized for Railway's Hobby plan ($5/month; at most 6 replicas of
// 8 vCPU / 8192 MB). Every number comes from the template's plan table,
// like the cluster's defaults (railkit.json's "plans").
import { defineRailway, redis, service } from "railway/iac";

const PLAN = "hobby";
// Seconds gunicorn gives requests in flight after SIGTERM (the cluster's GRACEFUL_TIMEOUT).
const GRACEFUL_TIMEOUT = 10;
// Railway SIGKILLs the old deploy this long after SIGTERM (its default is 0 s): the lame-duck
// phase (SHUTDOWN_DELAY, 3 s), then the drain and graceful stop (GRACEFUL_TIMEOUT), then
// 5 s for the workers to exit. railway-template.json uses the same figure.
const DRAINING_SECONDS = 18;
const MB = 1024 * 1024;

export default defineRailway((ctx, project) => {
  const production = ctx.environment === "production";
  // Shared store for rate limits: one count across every worker and replica.
  // Its name is what the template's `${{Redis.REDIS_URL}}` refers to.
  const cache = redis("Redis");

  const web = service("my-service", {
    // Railpack, as a template deploy gets it (the Dockerfile for other hosts is in docker/, not at the root).
    build: { builder: "RAILPACK" },
    // Checks every variable, then runs gunicorn with ./gunicorn.conf.py; works with or without a shell.
    start: "python -m railkit.cluster serve",
    healthcheck: "/health/ready",
    healthcheckTimeout: 120,
    replicas: production ? 2 : 1,
    deploy: {
      restartPolicyType: "ON_FAILURE",
      restartPolicyMaxRetries: 10,
      drainingSeconds: DRAINING_SECONDS,
      overlapSeconds: 5,
      limitOverride: { containers: { cpu: 2, memoryBytes: 2048 * MB } },
    },
    env: {
      RAILWAY_PLAN: PLAN,
      ENABLE_CLUSTERING: "true",
      WORKER_MAX_MEMORY_MB: "384",
      GRACEFUL_TIMEOUT: String(GRACEFUL_TIMEOUT),
      RATE_LIMIT: "300/minute",
      REDIS_URL: cache.env.REDIS_URL,
    },
  });

  return project("my-service", { resources: [cache, web] });
});

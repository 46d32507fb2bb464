{%- set plan = cookiecutter._plans[cookiecutter.railway_plan] -%}
{%- set production = plan.replicas.production -%}
{%- set staging = plan.replicas.staging -%}
// Railway infrastructure as code for {{ cookiecutter.project_name }}: `railway config plan`, then `railway config apply`.
// Sized for Railway's {{ plan.label }} plan ({{ plan.price }}; at most {{ plan.max_replicas }} replicas of
// {{ plan.max_vcpu }} vCPU / {{ plan.max_memory_mb }} MB). Every number comes from the template's plan table,
// like the cluster's defaults in {{ cookiecutter.package }}/plans.json.
{%- set repository = cookiecutter.github_repository.split("/") %}
import { defineRailway, {% if cookiecutter.github_repository %}github, {% endif %}{% if cookiecutter.use_redis %}redis, {% endif %}service } from "railway/iac";

const PLAN = "{{ cookiecutter.railway_plan }}";
// Seconds gunicorn gives requests in flight after SIGTERM (the cluster's GRACEFUL_TIMEOUT).
const GRACEFUL_TIMEOUT = {{ plan.graceful_timeout }};
// Railway SIGKILLs the old deploy this long after SIGTERM (its default is 0 s): the lame-duck
// phase (SHUTDOWN_DELAY, {{ plan.shutdown_delay }} s), then the drain and graceful stop (GRACEFUL_TIMEOUT), then
// {{ cookiecutter._railway_template.draining_margin_seconds }} s for the workers to exit. railway-template.json uses the same figure.
const DRAINING_SECONDS = {{ cookiecutter.__draining_seconds }};
const MB = 1024 * 1024;

export default defineRailway((ctx, project) => {
  const production = ctx.environment === "production";
{%- if cookiecutter.use_redis %}
  // Shared store for rate limits: one count across every worker and replica.
  const cache = redis("redis");
{%- endif %}

  const web = service("{{ cookiecutter.project }}", {
{%- if cookiecutter.github_repository %}
    // The code Railway builds: what a template made from this project deploys.
    source: github("{{ repository[:2] | join("/") }}"{% if repository[2:] %}, { rootDirectory: "{{ repository[2:] | join("/") }}" }{% endif %}),
{%- endif %}
    // Railpack, even with the Dockerfile (kept for other hosts) in the repository.
    build: { builder: "RAILPACK" },
    // Checks every variable, then runs gunicorn with ./gunicorn.conf.py.
    start: "python -m {{ cookiecutter.package }}.cluster serve",
    healthcheck: "/health/ready",
    healthcheckTimeout: 120,
    replicas: production ? {{ production | tojson }} : {{ staging | tojson }},
    deploy: {
      restartPolicyType: "{{ plan.restart_policy }}",
      restartPolicyMaxRetries: {{ plan.restart_retries }},
      drainingSeconds: DRAINING_SECONDS,
      overlapSeconds: {{ plan.overlap_seconds }},
      limitOverride: { containers: { cpu: {{ plan.vcpu }}, memoryBytes: {{ plan.memory_mb }} * MB } },
    },
    env: {
      RAILWAY_PLAN: PLAN,
      ENABLE_CLUSTERING: "{{ plan.clustering | lower }}",
      WORKER_MAX_MEMORY_MB: "{{ plan.worker_max_memory_mb }}",
      GRACEFUL_TIMEOUT: String(GRACEFUL_TIMEOUT),
      RATE_LIMIT: "{{ plan.rate_limit }}",
{%- if cookiecutter.use_redis %}
      REDIS_URL: cache.env.REDIS_URL,
{%- endif %}
    },
  });

  return project("{{ cookiecutter.project }}", { resources: [{% if cookiecutter.use_redis %}cache, {% endif %}web] });
});

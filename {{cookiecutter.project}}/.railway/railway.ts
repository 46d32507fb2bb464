{%- set plan = cookiecutter._plans[cookiecutter.railway_plan] -%}
{%- set production = plan.replicas.production -%}
{%- set staging = plan.replicas.staging -%}
// Railway infrastructure as code for {{ cookiecutter.project_name }}: `railway config plan`, then `railway config apply`.
// Sized for Railway's {{ plan.label }} plan ({{ plan.price }}; at most {{ plan.max_replicas }} replica{{ "s" if plan.max_replicas != 1 }} of
// {{ plan.max_vcpu }} vCPU / {{ plan.max_memory_mb }} MB). Every number comes from the template's plan table,
// like the cluster's defaults (railkit.json's "plans").
{%- set repository = cookiecutter.github_repository.split("/") %}
import { defineRailway, {% if cookiecutter.github_repository %}github, {% endif %}{% if cookiecutter.database == 'postgres' %}postgres, {% endif %}{% if cookiecutter.__redis == 'yes' %}redis, {% endif %}{% if cookiecutter.database == 'postgres' %}ref, {% endif %}service } from "railway/iac";

const PLAN = "{{ cookiecutter.railway_plan }}";
// Seconds gunicorn gives requests in flight after SIGTERM (the cluster's GRACEFUL_TIMEOUT).
const GRACEFUL_TIMEOUT = {{ plan.graceful_timeout }};
// Railway SIGKILLs the old deploy this long after SIGTERM (its default is 0 s): the lame-duck
// phase (SHUTDOWN_DELAY, {{ plan.shutdown_delay }} s), then the drain and graceful stop (GRACEFUL_TIMEOUT), then
// {{ cookiecutter._railway_template.draining_margin_seconds }} s for the workers to exit. railway-template.json uses the same figure.
const DRAINING_SECONDS = {{ cookiecutter.__draining_seconds }};
const MB = 1024 * 1024;

{%- if cookiecutter.database == 'postgres' %}
// A second service from the same code and build with a start command of its own: a queue worker, a cron
// job (README: "A second service"). Write {{ cookiecutter.package }}/worker.py, then set this to true.
const WORKER = false;
// Its replicas, and the connections each holds (its DATABASE_POOL_SIZE). The web service's budget leaves
// it replicas x pool x 2 (the old and the new deployment, during a deploy): DATABASE_OTHER_CONNECTIONS.
const WORKER_REPLICAS = 1;
const WORKER_POOL_SIZE = 2;
const WORKER_CONNECTIONS = WORKER ? WORKER_REPLICAS * WORKER_POOL_SIZE * 2 : 0;

// How many replicas a `replicas` value runs, its regions added up.
const replicaCount = (replicas: number | Record<string, number>): number =>
  typeof replicas === "number" ? replicas : Object.values(replicas).reduce((sum, count) => sum + count, 0);
{%- endif %}

export default defineRailway((ctx, project) => {
{%- if production != staging %}
  const production = ctx.environment === "production";
{%- endif %}
{%- if cookiecutter.database == 'postgres' %}
  // The replicas of this service in this environment: the one place to change them. Railway runs this
  // many, and the database's connection budget counts them (DATABASE_REPLICAS).
{%- if production == staging %}
  const replicas = {{ production | tojson }};
{%- else %}
  const replicas = production ? {{ production | tojson }} : {{ staging | tojson }};
{%- endif %}
{%- endif %}
{%- if cookiecutter.__redis == 'yes' %}
  // Shared store for rate limits: one count across every worker and replica.
  // Its name is what the template's `${% raw %}{{{% endraw %}{{ cookiecutter._railway_template.redis_service }}.REDIS_URL{% raw %}}}{% endraw %}` refers to.
  const cache = redis("{{ cookiecutter._railway_template.redis_service }}");
{%- endif %}
{%- if cookiecutter.database == 'postgres' %}
  // Railway's Postgres; the cluster sizes every worker's pool from its max_connections (100 by default),
  // or from what its PgBouncer accepts once one is added (README: "Your database").
  const db = postgres("{{ cookiecutter._railway_template.postgres_service }}");
{%- endif %}

  const web = service("{{ cookiecutter.project }}", {
{%- if cookiecutter.github_repository %}
    // The code Railway builds: what a template made from this project deploys.
    source: github("{{ repository[:2] | join("/") }}"{% if repository[2:] %}, { rootDirectory: "{{ repository[2:] | join("/") }}" }{% endif %}),
{%- endif %}
    // Railpack, as a template deploy gets it (the Dockerfile for other hosts is in docker/, not at the root).
    build: { builder: "RAILPACK" },
    // Checks every variable, then runs gunicorn with ./gunicorn.conf.py; works with or without a shell.
    start: {{ cookiecutter._railway_template.start_command | tojson }},
    healthcheck: {{ cookiecutter._railway_template.healthcheck_path | tojson }},
    healthcheckTimeout: {{ cookiecutter._railway_template.healthcheck_timeout_seconds }},
{%- if cookiecutter.database == 'postgres' %}
    // Migrations once per deploy, before it takes traffic (under an advisory lock); a failure fails the deploy.
    preDeploy: {{ cookiecutter._railway_template.migrate_command | tojson }},
{%- endif %}
{%- if cookiecutter.database == 'postgres' %}
    replicas,
{%- elif production == staging %}
    replicas: {{ production | tojson }},
{%- else %}
    replicas: production ? {{ production | tojson }} : {{ staging | tojson }},
{%- endif %}
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
{%- if cookiecutter.__redis == 'yes' %}
      REDIS_URL: cache.env.REDIS_URL,
{%- endif %}
{%- if cookiecutter.database == 'postgres' %}
      // PgBouncer's, once it is added to Postgres (Database -> Config -> Connection Pooling): requests.
      DATABASE_URL: db.env.DATABASE_URL,
      // Postgres itself, for migrations and their lock; empty while there is no PgBouncer. (ref(): the
      // SDK's types list no DATABASE_UNPOOLED_URL, which PgBouncer adds.)
      DATABASE_UNPOOLED_URL: ref(db, "DATABASE_UNPOOLED_URL"),
      DATABASE_REPLICAS: String(replicaCount(replicas)),
      DATABASE_OTHER_CONNECTIONS: String(WORKER_CONNECTIONS),
{%- endif %}
    },
  });
{%- if cookiecutter.database == 'postgres' %}

  const worker = service("{{ cookiecutter.project }}-worker", {
{%- if cookiecutter.github_repository %}
    source: github("{{ repository[:2] | join("/") }}"{% if repository[2:] %}, { rootDirectory: "{{ repository[2:] | join("/") }}" }{% endif %}),
{%- endif %}
    build: { builder: "RAILPACK" },
    start: "python -m {{ cookiecutter.package }}.worker",
    replicas: WORKER_REPLICAS,
    deploy: {
      restartPolicyType: "{{ plan.restart_policy }}",
      restartPolicyMaxRetries: {{ plan.restart_retries }},
      drainingSeconds: DRAINING_SECONDS,
    },
    env: {
      RAILWAY_PLAN: PLAN,
{%- if cookiecutter.__redis == 'yes' %}
      REDIS_URL: cache.env.REDIS_URL,
{%- endif %}
      DATABASE_URL: db.env.DATABASE_URL,
      DATABASE_UNPOOLED_URL: ref(db, "DATABASE_UNPOOLED_URL"),
      DATABASE_POOL_SIZE: String(WORKER_POOL_SIZE),
    },
  });
{%- endif %}

{%- if cookiecutter.database == 'postgres' %}

  return project("{{ cookiecutter.project }}", {
    resources: [db, {% if cookiecutter.__redis == 'yes' %}cache, {% endif %}web, ...(WORKER ? [worker] : [])],
  });
{%- else %}

  return project("{{ cookiecutter.project }}", { resources: [{% if cookiecutter.__redis == 'yes' %}cache, {% endif %}web] });
{%- endif %}
});

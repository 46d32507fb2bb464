"""{{ cookiecutter.project }}: the Flask app factory. This package is yours."""

from flask import Flask

import railkit
{%- if cookiecutter.database == "postgres" %}
import railkit.db
{%- endif %}


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app; `test_config` overrides any setting (the tests use it)."""
    app = Flask(__name__)
    # The platform's layers: problem+json errors, JSON bodies, request ids and
    # JSON logs, the client's address, rate limits, /metrics and /health.
    railkit.init_app(app, test_config)
{%- if cookiecutter.database == "postgres" %}
    # Postgres: DATABASE_URL checked, a session per request, pools the cluster sizes (README: "Your database").
    railkit.db.init_app(app)
{%- endif %}

    # Your stuff: blueprints, extensions, settings of your own.
    from . import {% if cookiecutter.database == "postgres" %}items, {% endif %}views

{% if cookiecutter.database == "postgres" %}    app.register_blueprint(items.bp)
{% endif %}    app.register_blueprint(views.bp)
    return app

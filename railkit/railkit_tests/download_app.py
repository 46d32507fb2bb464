"""The connection tests' app with a file download, sent the way Flask sends files (gunicorn's sendfile).

gunicorn serves it as `railkit_tests.download_app:create_app()`.
"""

import tempfile

from flask import Blueprint, request, send_file

from . import big_answer_app

bp = Blueprint("download", __name__)

# One file per size asked for, made on first use in each worker.
_files: dict[int, str] = {}


@bp.get("/file")
def file():
    """A file of `mb` megabytes (8 by default), as send_file serves one: a file wrapper, not bytes."""
    size = int(float(request.args.get("mb", "8")) * 2**20)
    if size not in _files:
        with tempfile.NamedTemporaryFile(prefix="download-", delete=False) as made:
            made.write(b"x" * size)
        _files[size] = made.name
    return send_file(_files[size], mimetype="application/octet-stream")


def create_app(test_config: dict | None = None):
    app = big_answer_app.create_app(test_config)
    app.register_blueprint(bp)
    return app

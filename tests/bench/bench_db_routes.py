"""The database route, added beside bench_routes.py only in projects generated with database=postgres.

Its own module: bench_routes.py is in every bench project, and railkit.db needs
the dependencies only a postgres project installs.
"""

from bench_routes import app
from sqlalchemy.orm import Mapped, mapped_column

from railkit.db import Model, session


class BenchRow(Model):
    """A row of the table the bench fills before the database scenario (id is its primary key's index)."""

    __tablename__ = "bench_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    price: Mapped[float]


@app.get("/db/<int:row_id>")
def db_row(row_id: int):
    """One indexed SELECT by primary key, through the request's own session."""
    row = session.get(BenchRow, row_id)
    if row is None:
        return {"title": "no such row"}, 404
    return {"id": row.id, "name": row.name, "price": row.price}

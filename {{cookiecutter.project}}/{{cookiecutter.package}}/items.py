"""An example resource on Postgres: a small CRUD on one table. Replace it with your own, or delete it.

The pattern: a model (a subclass of railkit.db.Model), a blueprint whose
views use `session` (the request's own), and a migration in
migrations/versions/ that creates the table (workers never create tables).
To remove it, follow the README's "Removing the example": delete this file,
its lines in create_app and migrations/env.py and tests/test_items.py, keep
its migration (deployed databases record it), and autogenerate the one that
drops the table.
"""

from datetime import datetime

from flask import Blueprint, request
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from railkit import Problem
from railkit.db import Model, session

bp = Blueprint("items", __name__, url_prefix="/items")

NAME_MAX_LENGTH = 200
PAGE_SIZE = 50


class Item(Model):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    def as_json(self) -> dict:
        return {"id": self.id, "name": self.name, "created_at": self.created_at.isoformat()}


def _name_from_body() -> str:
    payload = request.get_json()
    name = payload.get("name") if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX_LENGTH:
        raise Problem(
            422,
            f"name must be a non-empty string of at most {NAME_MAX_LENGTH} characters",
            errors=[{"pointer": "#/name", "detail": "required string"}],
        )
    return name.strip()


def _item_or_404(item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise Problem(404, f"No item {item_id}")
    return item


@bp.get("")
def list_items():
    """The latest items, newest first."""
    items = session.scalars(select(Item).order_by(Item.id.desc()).limit(PAGE_SIZE))
    return {"items": [item.as_json() for item in items]}


@bp.post("")
def create_item():
    item = Item(name=_name_from_body())
    session.add(item)
    session.commit()
    return item.as_json(), 201, {"Location": f"/items/{item.id}"}


@bp.get("/<int:item_id>")
def get_item(item_id: int):
    return _item_or_404(item_id).as_json()


@bp.put("/<int:item_id>")
def rename_item(item_id: int):
    item = _item_or_404(item_id)
    item.name = _name_from_body()
    session.commit()
    return item.as_json()


@bp.delete("/<int:item_id>")
def delete_item(item_id: int):
    session.delete(_item_or_404(item_id))
    session.commit()
    return "", 204

"""The example resource against a real Postgres (conftest.py: a throwaway server, migrated like a deploy)."""


def test_create_read_rename_delete(client):
    created = client.post("/items", json={"name": "first"})
    assert created.status_code == 201
    item = created.get_json()
    assert created.headers["Location"] == f"/items/{item['id']}"
    assert client.get(f"/items/{item['id']}").get_json()["name"] == "first"
    assert client.put(f"/items/{item['id']}", json={"name": "renamed"}).get_json()["name"] == "renamed"
    assert [entry["name"] for entry in client.get("/items").get_json()["items"]] == ["renamed"]
    assert client.delete(f"/items/{item['id']}").status_code == 204
    assert client.get(f"/items/{item['id']}").status_code == 404


def test_a_bad_name_is_a_422_problem(client):
    response = client.post("/items", json={"name": ""})
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"


def test_an_unknown_item_is_a_404_problem(client):
    response = client.get("/items/999999")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"

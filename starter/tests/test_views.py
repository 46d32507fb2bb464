"""Tests of the example routes: replace them with your own along with views.py."""

PROBLEM = "application/problem+json"


def test_index(client):
    assert client.get("/").get_json()["message"] == "Hello from my-service"


def test_echo_returns_the_body(client):
    assert client.post("/echo", json={"a": 1}).get_json() == {"received": {"a": 1}}


def test_echo_refuses_what_is_not_an_object(client):
    response = client.post("/echo", json=[1, 2])
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.get_json()["errors"] == [{"pointer": "#", "detail": "expected an object"}]


def test_bad_json_is_a_problem(client):
    response = client.post("/echo", data="{", content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == PROBLEM

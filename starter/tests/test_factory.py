from my_service import create_app


def test_config():
    """test_config reaches the app, and the platform's /health is there."""
    assert not create_app().testing
    app = create_app({"TESTING": True})
    assert app.testing
    assert app.test_client().get("/health").get_json()["status"] == "pass"

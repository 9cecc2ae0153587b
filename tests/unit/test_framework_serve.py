"""inngest.flask.serve and inngest.django.serve, as for FastAPI: the web app keeps working and a read-only
/api/inngest describes the functions (they run on pipeline workers)."""

from __future__ import annotations

import pytest

import pipeline as inngest

client = inngest.Inngest(app_id="web")


@client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="app/hello"))
def hello(ctx: inngest.Context) -> str:
    return "hi"


def test_flask_serve_keeps_the_app_and_describes_the_functions() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("web")

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    inngest.flask.serve(app, client, [hello])
    http = app.test_client()
    assert http.get("/ping").text == "pong"
    described = http.get("/api/inngest").get_json()
    assert described["functions"][0]["id"] == "web-hello"
    assert http.put("/api/inngest").status_code == 200 and http.post("/api/inngest").status_code == 501


def test_django_serve_returns_a_url_pattern_that_describes_the_functions() -> None:
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], SECRET_KEY="test", DEBUG=True)
    import django
    from django.test import Client
    from django.urls import clear_url_caches

    django.setup()
    global urlpatterns
    urlpatterns = [inngest.django.serve(client, [hello])]
    clear_url_caches()
    http = Client()
    answer = http.get("/api/inngest")
    assert answer.status_code == 200 and answer.json()["app_id"] == "web"
    assert http.post("/api/inngest").status_code == 501


urlpatterns: list = []

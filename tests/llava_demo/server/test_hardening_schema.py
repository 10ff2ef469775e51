"""Issue 19, beyond the defects: the chat-completions endpoint described by pydantic models in the OpenAPI
document, real responses valid against them, and schemathesis fuzzing the whole API (bounded number of
examples): no 5xx, and the server still answers afterwards."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from llava_demo.server.app import create_app
from llava_demo.server.config import ServerConfig
from llava_demo.server.schema import ChatCompletionResponse, ErrorResponse
from tests.support.server_fakes import FakeBackend

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402 - after the skip

APP = create_app(
    FakeBackend(), ServerConfig.tiny(max_queue=64, max_request_chars=4096, max_message_chars=4096)
)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)


def test_the_openapi_document_describes_the_request_and_the_answers():
    with TestClient(APP) as client:
        document = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    operation = document["paths"]["/v1/chat/completions"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    fields = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"messages", "max_tokens", "temperature", "stream"} <= set(fields)
    assert {"200", "400", "413", "429", "503"} <= set(operation["responses"])


def test_real_responses_match_the_models():
    with TestClient(APP) as client:
        ok = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        bad = client.post("/v1/chat/completions", json={"messages": []})
    assert (
        ok.status_code == 200 and ChatCompletionResponse.model_validate(ok.json()).choices[0].message.content
    )
    assert bad.status_code == 400 and ErrorResponse.model_validate(bad.json()).error.param == "messages"


@pytest.mark.slow
@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_5xx(case):
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])


@pytest.mark.slow
def test_the_server_still_answers_after_fuzzing():
    with TestClient(APP) as client:
        assert client.get("/health").status_code == 200
        ok = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200


def test_a_non_string_role_is_a_400_not_a_500():
    """Found by the fuzzing above: ``"role": {}`` raised TypeError inside the parser."""
    with TestClient(APP) as client:
        response = client.post("/v1/chat/completions", json={"messages": [{"role": {}, "content": "hi"}]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0]"

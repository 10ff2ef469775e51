"""The chat-completions request and response as pydantic models: the OpenAPI schema ``/docs`` and
``/openapi.json`` show, and what schemathesis fuzzes the server with (tests/llava_demo/server/test_hardening_schema.py).

The handler still reads the raw body itself (the byte cap and the character bounds refuse oversized input
before any JSON is parsed, which a FastAPI body parameter would do first) and validates it with
``requests.parse_chat_request``, whose 400s name the field; these models describe the same shape and are
checked against real responses by the tests.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

CHAT_PATH = "/v1/chat/completions"
REF_TEMPLATE = "#/components/schemas/{model}"


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    url: str = Field(
        description="a data: URL (base64 image); file paths and http(s) only when the server allows"
    )


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart | ImagePart] = Field(description="images only in user messages")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The accepted subset of OpenAI's request (unknown fields are ignored, as SGLang does)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="the served name, the model as configured, or 'default'")
    messages: list[ChatMessage] = Field(min_length=1, description="the last one must come from the user")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    stream_options: StreamOptions | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class PromptTokensDetails(BaseModel):
    cached_tokens: int
    image_tokens: int


class UsageBody(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: UsageBody | None
    notices: list[str] | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def install_openapi(app: FastAPI) -> None:
    """Describe ``POST /v1/chat/completions`` with the models above in the app's OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        operation = document["paths"][CHAT_PATH]["post"]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(ChatCompletionRequest, components)}},
        }
        error = {"application/json": {"schema": _schema(ErrorResponse, components)}}
        operation["responses"] = {
            "200": {
                "description": "the answer (a chat.completion object; text/event-stream chunks when stream is true)",
                "content": {"application/json": {"schema": _schema(ChatCompletionResponse, components)}},
            },
            **{
                str(status): {"description": what, "content": error}
                for status, what in (
                    (400, "invalid request, or text over the character bounds"),
                    (401, "missing or wrong API key"),
                    (403, "an image path outside --image-root"),
                    (404, "model not served here, or an image file that does not exist"),
                    (413, "body over --max-request-bytes, or an image over the byte or pixel limits"),
                    (415, "an image format that is not accepted"),
                    (429, "queue full"),
                    (502, "a remote image could not be fetched"),
                    (503, "backend unavailable"),
                    (504, "backend timed out"),
                )
            },
        }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]

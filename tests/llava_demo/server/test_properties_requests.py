"""Property tests (issue 19) of the chat-completions request parser, ``llava_demo.server.requests``.

* any body, JSON or not, is a value or a 400 ``invalid_json`` (they found two 500s: ``[`` nested 100,000 deep
  raised ``RecursionError``, an integer of 5,000 digits a ``ValueError``);
* any JSON value as the decoded body is a ``ChatRequest`` or a 400, never another exception;
* a valid request with one field replaced by any JSON value is accepted or refused naming that field, and what is
  accepted is runnable: a seed of 2**64 was accepted and then failed inside ``torch.manual_seed`` (a 500);
* valid conversations keep every text and image: merged runs of one role, images in order, each image's
  ``param`` pointing at the part it came from.
"""

from __future__ import annotations

import json
import math
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llava_demo.backends.base import MAX_SEED, MAX_TEMPERATURE
from llava_demo.server.errors import ApiError
from llava_demo.server.requests import ChatRequest, parse_chat_request, parse_json_body

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT_MAX_TOKENS = 64
ROLE_OF = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
FIELDS = ("model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
          "max_completion_tokens", "stop", "seed", "n", "logprobs", "tools", "tool_choice", "response_format",
          "chat_template")  # fmt: skip

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TEXT_PART = st.builds(lambda text: {"type": "text", "text": text}, st.text(max_size=20))
URLS = st.text(min_size=1, max_size=30).filter(lambda url: url.strip())
IMAGE_PART = st.builds(
    lambda url, nested: {"type": "image_url", "image_url": {"url": url} if nested else url},
    URLS,
    st.booleans(),
)


def parse(body):
    return parse_chat_request(body, default_max_tokens=DEFAULT_MAX_TOKENS)


def message(role: str, images: bool) -> st.SearchStrategy[dict]:
    parts = TEXT_PART | IMAGE_PART if images else TEXT_PART
    contents = st.text(max_size=20) | st.lists(parts, max_size=4)
    if role == "assistant":
        contents = contents | st.none()
    return st.builds(lambda content: {"role": role, "content": content}, contents)


ANY_MESSAGE = st.sampled_from(sorted(ROLE_OF)).flatmap(lambda role: message(role, images=role == "user"))
# The last message must be the user's and not empty: some non-blank text or an image.
LAST_MESSAGE = st.builds(
    lambda text, parts: {"role": "user", "content": [{"type": "text", "text": text}, *parts]},
    st.text(min_size=1, max_size=20).filter(str.strip),
    st.lists(TEXT_PART | IMAGE_PART, max_size=3),
)
CONVERSATIONS = st.builds(lambda head, last: [*head, last], st.lists(ANY_MESSAGE, max_size=6), LAST_MESSAGE)


def texts_of(content) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part["text"] for part in content if part["type"] == "text"]


def image_urls_of(content) -> list[str]:
    if not isinstance(content, list):
        return []
    urls = []
    for part in content:
        if part["type"] == "image_url":
            ref = part["image_url"]
            urls.append(ref["url"] if isinstance(ref, dict) else ref)
    return urls


def contains_in_order(text: str, pieces: list[str]) -> bool:
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def check_runnable(request: ChatRequest) -> None:
    """What a backend needs of accepted parameters."""
    params = request.params
    assert 0 <= params.temperature <= MAX_TEMPERATURE and math.isfinite(params.temperature)
    assert 0 < params.top_p <= 1
    assert isinstance(params.max_new_tokens, int) and params.max_new_tokens >= 1
    assert params.seed is None or 0 <= params.seed <= MAX_SEED  # torch.manual_seed's range
    assert all(isinstance(stop, str) and stop for stop in params.stop)
    assert request.messages and request.messages[-1].role == "user"
    assert request.include_usage <= request.stream  # usage chunks only exist in a stream


@PROPERTIES
@given(
    raw=st.binary(max_size=64)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(1, 100_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth)
    | st.integers(4000, 6000).map(lambda digits: b"9" * digits)
)
def test_any_body_is_a_json_value_or_a_400(raw):
    try:
        parse_json_body(raw)
    except ApiError as error:
        assert error.status == 400 and error.code == "invalid_json", error


@PROPERTIES
@given(value=JSON_VALUES)
def test_json_values_round_trip_through_the_body_parser(value):
    assert parse_json_body(json.dumps(value).encode()) == value
    assert parse_json_body(json.dumps(value, ensure_ascii=False).encode()) == value


@PROPERTIES
@given(body=JSON_VALUES | st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5))
def test_any_decoded_body_is_a_request_or_a_400(body):
    try:
        request = parse(body)
    except ApiError as error:
        assert error.status == 400
        return
    check_runnable(request)


@PROPERTIES
@given(messages=CONVERSATIONS, field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_one_bad_field_is_refused_by_name_and_what_is_accepted_can_run(messages, field, value):
    body = {"messages": messages, field: value}
    try:
        request = parse(body)
    except ApiError as error:
        assert error.status == 400
        named = error.param is not None and (error.param == field or error.param.startswith(field))
        assert named or field in error.message, (field, value, error)
        return
    check_runnable(request)


@PROPERTIES
@given(
    messages=CONVERSATIONS,
    seed=st.integers(min_value=-(2**70), max_value=2**70),
    max_tokens=st.integers(-5, 10**6) | st.booleans(),
)
def test_integer_fields_are_checked_against_what_the_backend_can_take(messages, seed, max_tokens):
    try:
        request = parse({"messages": messages, "seed": seed, "max_tokens": max_tokens})
    except ApiError as error:
        assert error.status == 400
        bad_seed = not 0 <= seed <= MAX_SEED
        bad_tokens = isinstance(max_tokens, bool) or max_tokens < 1
        assert bad_seed or bad_tokens, error
        return
    assert request.params.seed == seed and request.params.max_new_tokens == max_tokens
    check_runnable(request)


@PROPERTIES
@given(legacy=st.none() | st.integers(-3, 10**6), current=st.none() | st.integers(-3, 10**6))
def test_max_tokens_fields_agree_and_a_bad_one_is_named(legacy, current):
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": legacy,
        "max_completion_tokens": current,
    }
    given_values = {name: value for name, value in (("max_tokens", legacy), ("max_completion_tokens", current))
                    if value is not None}  # fmt: skip
    try:
        request = parse(body)
    except ApiError as error:
        if len(given_values) == 2 and legacy != current:
            assert error.param == "max_tokens" and "disagree" in error.message
        else:  # one value (or two equal ones) below 1: the error names a field that holds it
            assert error.param in given_values and given_values[error.param] < 1, error
        return
    expected = next(iter(given_values.values())) if given_values else DEFAULT_MAX_TOKENS
    assert set(given_values.values()) <= {expected} and request.params.max_new_tokens == expected


@PROPERTIES
@given(messages=CONVERSATIONS)
def test_valid_conversations_keep_every_text_and_image_in_order(messages):
    request = parse({"messages": messages})
    roles = [ROLE_OF[m["role"]] for m in messages]
    runs = [role for index, role in enumerate(roles) if index == 0 or roles[index - 1] != role]
    assert [m.role for m in request.messages] == runs  # consecutive messages of one role are merged
    run_texts: list[list[str]] = []
    for index, raw in enumerate(messages):
        if index == 0 or roles[index - 1] != roles[index]:
            run_texts.append([])
        run_texts[-1] += texts_of(raw["content"])
    for merged, texts in zip(request.messages, run_texts, strict=True):
        assert contains_in_order(merged.text, [text for text in texts if text]), (merged.text, texts)
        assert len(merged.text) <= sum(map(len, texts)) + len(texts)  # only newlines are added
    images = [image for merged in request.messages for image in merged.images]
    assert [image.url for image in images] == [url for m in messages for url in image_urls_of(m["content"])]
    for image in images:  # "messages[i].content[j]" points at the part the image came from
        i, j = map(int, re.fullmatch(r"messages\[(\d+)\]\.content\[(\d+)\]", image.param).groups())
        assert image_urls_of([messages[i]["content"][j]]) == [image.url]
    check_runnable(request)

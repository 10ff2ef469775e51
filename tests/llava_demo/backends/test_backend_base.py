"""The backend interface and its pure helpers: parameters, events, cancel tokens, stop strings, devices."""

from __future__ import annotations

import threading

import pytest
import torch

from llava_demo.backends import (
    BackendError,
    BadRequestError,
    CancelToken,
    ContextOverflowError,
    SamplingParams,
    StreamEvent,
    Usage,
    check_conversation,
    collect,
    make_backend,
)
from llava_demo.backends.local_device import pick_device_and_dtype
from llava_demo.backends.stop_strings import StopStringFilter, find_stop, held_back_length
from vision_common.chat.conversation import Conversation


def test_sampling_defaults_are_the_llava_demo_ones_and_tiny_is_greedy():
    params = SamplingParams()
    assert (params.temperature, params.top_p, params.max_new_tokens, params.stop, params.seed) == (
        0.2,
        0.7,
        512,
        (),
        None,
    )
    assert not params.greedy
    assert SamplingParams.tiny().greedy and SamplingParams.tiny().max_new_tokens == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, "temperature must be in"),
        ({"temperature": 2.5}, "temperature must be in"),
        ({"temperature": float("nan")}, "temperature must be a number"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, "top_p must be in"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        ({"max_new_tokens": 3.0}, "max_new_tokens must be a positive integer"),
        ({"stop": ("ok", "")}, "stop must be non-empty strings"),
        ({"stop": tuple(str(i) for i in range(17))}, "at most 16"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": True}, "seed must be a non-negative integer"),
    ],
)
def test_sampling_params_reject_bad_values_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_a_single_stop_string_is_not_split_into_characters():
    assert SamplingParams(stop="</s>").stop == ("</s>",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")


def test_stream_event_shapes_are_enforced():
    assert StreamEvent.done("length", Usage(5, 2, 1)).usage.total_tokens == 7
    with pytest.raises(ValueError, match="done event needs finish_reason"):
        StreamEvent("done")
    with pytest.raises(ValueError, match="only a done event"):
        StreamEvent("delta", "x", finish_reason="stop")
    with pytest.raises(ValueError, match="notice event needs text"):
        StreamEvent.notice("")
    with pytest.raises(ValueError, match="image_tokens .* cannot exceed"):
        Usage(prompt_tokens=3, completion_tokens=0, image_tokens=4)


def test_collect_joins_deltas_and_keeps_notices_and_usage():
    events = [
        StreamEvent.notice("dropped 1"),
        StreamEvent.delta("Hel"),
        StreamEvent.delta("lo"),
        StreamEvent.done("stop", Usage(10, 2, 4)),
    ]
    done = collect(events)
    assert (done.text, done.finish_reason, done.usage, done.notices) == (
        "Hello",
        "stop",
        Usage(10, 2, 4),
        ("dropped 1",),
    )
    with pytest.raises(BackendError, match="without a final event"):
        collect([StreamEvent.delta("cut")])


def test_errors_carry_codes_and_statuses_for_servers():
    overflow = ContextOverflowError("too long", prompt_tokens=5000, max_new_tokens=10, context_length=4096)
    assert isinstance(overflow, BadRequestError) and overflow.http_status == 400
    assert overflow.code == "context_length_exceeded" and overflow.prompt_tokens == 5000
    assert BackendError("x").user_message == "x"


def test_cancel_token_runs_callbacks_once_and_unregisters():
    token = CancelToken()
    calls: list[str] = []
    unregister = token.add_callback(lambda: calls.append("a"))
    token.add_callback(lambda: calls.append("b"))
    unregister()
    assert not token.cancelled and calls == []
    token.cancel()
    token.cancel()
    assert token.cancelled and calls == ["b"]
    token.add_callback(lambda: calls.append("late"))  # already cancelled: runs at once
    assert calls == ["b", "late"]


def test_cancel_token_wakes_a_waiting_thread():
    token = CancelToken()
    woke = threading.Event()
    waiter = threading.Thread(target=lambda: token.wait(5) and woke.set())
    waiter.start()
    token.cancel()
    waiter.join(2)
    assert woke.is_set()


def test_check_conversation_rules():
    with pytest.raises(BadRequestError, match="must end with a user message"):
        check_conversation(Conversation().with_user("q").with_assistant("a"))
    with pytest.raises(BadRequestError, match="ends with nothing"):
        check_conversation(Conversation())
    with pytest.raises(BadRequestError, match="last user message is empty"):
        check_conversation(Conversation().with_user("   "))
    check_conversation(Conversation().with_user("", images=["img"]))  # an image alone is a question


def test_make_backend_rejects_unknown_kinds_and_options():
    with pytest.raises(ValueError, match="kind must be one of"):
        make_backend("vllm", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]"):
        make_backend("openai", "default", colour="red")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]"):
        make_backend("sglang", "default", url="http://127.0.0.1:1", colour="red")


# -- stop strings -------------------------------------------------------------------------------------------


def test_find_stop_and_held_back_length():
    assert find_stop("abc</s>def###", ["###", "</s>"]) == 3
    assert find_stop("abc", ["x"]) == -1
    assert held_back_length("hello </", ["</s>"]) == 2
    assert held_back_length("hello <", ["</s>", "<|im_end|>"]) == 1
    assert held_back_length("hello", ["</s>"]) == 0


@pytest.mark.parametrize(
    ("chunks", "shown", "stopped"),
    [
        (["Hel", "lo</", "s> ignored"], "Hello", True),  # stop string split over chunks
        (["Hello </", "b>"], "Hello </b>", False),  # a false start is released
        (["a", "b"], "ab", False),
        (["x###y"], "x", True),
        (["<", "|im_", "end|>more"], "", True),
    ],
)
def test_stop_string_filter_never_shows_part_of_a_stop(chunks, shown, stopped):
    text_filter = StopStringFilter(["</s>", "###", "<|im_end|>"])
    out = "".join(text_filter.feed(chunk) for chunk in chunks) + text_filter.flush()
    assert (out, text_filter.stopped) == (shown, stopped)


# -- device choice ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "dtype", "cuda", "mps", "expected"),
    [
        ("auto", "auto", True, True, ("cuda", torch.bfloat16)),
        ("auto", "auto", False, True, ("mps", torch.float16)),
        ("auto", "auto", False, False, ("cpu", torch.float32)),
        ("cpu", "bfloat16", True, False, ("cpu", torch.bfloat16)),
        ("cuda:1", "auto", True, False, ("cuda:1", torch.bfloat16)),
    ],
)
def test_pick_device_and_dtype(device, dtype, cuda, mps, expected):
    chosen, chosen_dtype = pick_device_and_dtype(device, dtype, cuda_available=cuda, mps_available=mps)
    assert (str(chosen), chosen_dtype) == expected


def test_pick_device_and_dtype_errors_name_the_problem():
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device_and_dtype("cuda", "auto", cuda_available=False, mps_available=False)
    with pytest.raises(ValueError, match="device must be"):
        pick_device_and_dtype("tpu", "auto", cuda_available=True, mps_available=True)
    with pytest.raises(ValueError, match="dtype must be"):
        pick_device_and_dtype("cpu", "fp8", cuda_available=True, mps_available=True)

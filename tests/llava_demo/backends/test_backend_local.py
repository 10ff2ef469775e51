"""The in-process backend on a tiny random LLaVA-NeXT built here, saved, and reloaded offline.

The tiny checkpoint (tests/support/tiny_llava.py) never samples ``</s>``, so an uncancelled generation always runs
to ``max_new_tokens``: greedy outputs are deterministic and long generations are long on purpose.
Image-token counts for AnyResConfig.tiny(): 32x32 -> 36, 100x50 -> 52, 300x200 -> 70 (serving.md §7).
"""

from __future__ import annotations

import io
import os
import threading
import time

import pytest
import torch
from PIL import Image

from llava_demo.backends import (
    BackendError,
    BackendUnavailable,
    BadRequestError,
    CancelToken,
    ChatBackend,
    ContextOverflowError,
    GenerationTimeout,
    SamplingParams,
    StreamEvent,
    make_backend,
)
from llava_demo.backends.local import LocalBackend, LocalBackendConfig
from tests.support.tiny_llava import TINY_ANYRES
from vision_common.anyres.geometry import num_image_tokens
from vision_common.chat.conversation import Conversation

GREEDY = SamplingParams.tiny(max_new_tokens=12)


@pytest.fixture(scope="module")
def checkpoint(tiny_llava_endless_dir):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: reloading must not need the hub
    return tiny_llava_endless_dir


@pytest.fixture(scope="module")
def backend(checkpoint):
    torch.set_num_threads(1)
    loaded = make_backend("local", str(checkpoint), **vars(LocalBackendConfig.tiny()))
    yield loaded
    loaded.close()


def image(size=(100, 50), color="red") -> Image.Image:
    return Image.new("RGB", size, color)


def reference_greedy(backend: LocalBackend, conversation: Conversation, max_new_tokens: int) -> str:
    """Plain transformers: render, process, generate, decode; what the backend must reproduce."""
    prompt = backend.template.renderer.render(conversation).text
    pil = [ref for ref in conversation.images]
    inputs = backend.processor(text=prompt, images=pil or None, return_tensors="pt")
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return backend.processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )


def test_loads_offline_with_the_checkpoints_template(backend):
    health = backend.health()
    assert (health["status"], health["device"], health["dtype"], health["busy"]) == (
        "ok",
        "cpu",
        "float32",
        False,
    )
    assert health["template_source"] == "checkpoint" and health["context_length"] == 4096
    assert (
        isinstance(backend, ChatBackend) and backend.name == "local" and backend.model_id.startswith("tiny")
    )


def test_stream_matches_complete_and_plain_transformers(backend):
    conversation = Conversation().with_user("what is this?", images=[image()])
    events = list(backend.stream(conversation, GREEDY))
    assert [e.kind for e in events[:-1]] == ["delta"] * (len(events) - 1) and events[-1].kind == "done"
    streamed = "".join(e.text for e in events)
    assert streamed == backend.complete(conversation, GREEDY).text
    assert streamed == reference_greedy(backend, conversation, 12)
    done = events[-1]
    assert done.finish_reason == "length" and done.usage.completion_tokens == 12


def test_usage_counts_prompt_and_anyres_image_tokens(backend):
    sizes = [(100, 50), (300, 200)]
    conversation = Conversation().with_user("two", images=[image(s) for s in sizes])
    usage = backend.complete(conversation, GREEDY).usage
    expected_images = sum(num_image_tokens(s, TINY_ANYRES) for s in sizes)
    assert expected_images == 52 + 70 and usage.image_tokens == expected_images
    prompt = backend.template.renderer.render(conversation).text
    text_only = len(backend.processor.tokenizer(prompt)["input_ids"])  # each <image> counted once
    assert usage.prompt_tokens == text_only - 2 + expected_images


def test_builtin_template_renders_the_same_prompt_as_the_checkpoint(checkpoint, backend):
    builtin = make_backend("local", str(checkpoint), **vars(LocalBackendConfig.tiny(template="vicuna_v1")))
    assert builtin.health()["template_source"] == "builtin"
    conversation = Conversation().with_user("hi", images=[image((32, 32))])
    assert builtin.complete(conversation, GREEDY) == backend.complete(conversation, GREEDY)


def test_stop_string_cuts_the_answer_and_finishes_with_stop(backend):
    conversation = Conversation().with_user("say something")
    full = backend.complete(conversation, SamplingParams.tiny(max_new_tokens=20)).text
    stop = full[5:7]
    done = backend.complete(conversation, SamplingParams.tiny(max_new_tokens=20, stop=(stop,)))
    assert done.text == full[: full.index(stop)] and done.finish_reason == "stop"
    assert done.usage.completion_tokens < 20  # generation itself stopped, not just the text


def test_seeded_sampling_is_repeatable(backend):
    conversation = Conversation().with_user("sample")
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=10, seed=7)
    assert backend.complete(conversation, params).text == backend.complete(conversation, params).text


def test_cancellation_stops_generation_within_a_second(checkpoint):
    slow = LocalBackend.load(str(checkpoint), LocalBackendConfig.tiny())
    cancel = CancelToken()
    cancelled_at: list[float] = []

    def fire() -> None:
        cancelled_at.append(time.monotonic())
        cancel.cancel()

    started = time.monotonic()
    timer = threading.Timer(0.5, fire)
    timer.start()
    done = slow.complete(Conversation().with_user("go on"), SamplingParams.tiny(max_new_tokens=3900), cancel)
    finished = time.monotonic()
    timer.join()
    assert done.finish_reason == "cancelled" and finished - cancelled_at[0] < 1.0
    produced = done.usage.completion_tokens
    assert 0 < produced < 3900
    # The test only proves something if the uncancelled run would have lasted well past the 1 s window
    # (about 3 s on an idle 2-core machine, longer under load).
    assert 3900 * (cancelled_at[0] - started) / produced > 1.5
    assert not slow.health()["busy"]


def test_abandoned_stream_stops_the_thread_and_frees_the_model(backend):
    events = backend.stream(Conversation().with_user("long"), SamplingParams.tiny(max_new_tokens=3900))
    assert next(events).kind == "delta"
    events.close()  # what a disconnected client does
    started = time.monotonic()
    assert backend.complete(Conversation().with_user("next"), GREEDY).finish_reason == "length"
    assert time.monotonic() - started < 1.0


def test_requests_are_serialised_and_a_waiting_one_can_be_cancelled(backend):
    conversation = Conversation().with_user("same question")
    expected = backend.complete(conversation, GREEDY).text
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(backend.complete(conversation, GREEDY).text))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [expected] * 3

    long_cancel, waiting_cancel = CancelToken(), CancelToken()
    long_run = backend.stream(conversation, SamplingParams.tiny(max_new_tokens=3900), long_cancel)
    next(long_run)  # holds the model lock now
    assert backend.health()["busy"]
    waiting_cancel.cancel()
    waiting = backend.complete(conversation, GREEDY, waiting_cancel)
    assert waiting.finish_reason == "cancelled" and waiting.usage.completion_tokens == 0
    long_cancel.cancel()
    assert list(long_run)[-1].finish_reason == "cancelled"


def test_context_guard_drops_oldest_exchanges_with_a_notice(checkpoint, backend):
    turns = (
        Conversation()
        .with_user("first", images=[image((300, 200), "red")])
        .with_assistant("a red box")
        .with_user("second", images=[image((300, 200), "green")])
        .with_assistant("a green box")
        .with_user("third", images=[image((100, 50), "blue")])
    )
    full = backend.complete(turns, GREEDY).usage.prompt_tokens
    one_dropped = backend.complete(turns.drop_oldest_exchanges(1), GREEDY).usage.prompt_tokens
    # 70 AnyRes tokens of the dropped image are part of the difference; text-only counting would miss them.
    assert full - one_dropped > 70
    tight = make_backend(
        "local", str(checkpoint), **vars(LocalBackendConfig.tiny(context_length=one_dropped + 12))
    )
    done = tight.complete(turns, GREEDY)
    assert done.notices == ("dropped the 1 oldest exchange and 1 image to fit the model's "
                            f"{one_dropped + 12}-token context",)  # fmt: skip
    assert done.usage.prompt_tokens == one_dropped and done.usage.image_tokens == 70 + 52
    assert done.text == backend.complete(turns.drop_oldest_exchanges(1), GREEDY).text


def test_answer_budget_is_lowered_when_only_the_last_turn_is_left(checkpoint, backend):
    question = Conversation().with_user("only", images=[image((32, 32))])
    prompt = backend.complete(question, GREEDY).usage.prompt_tokens
    tight = make_backend("local", str(checkpoint), **vars(LocalBackendConfig.tiny(context_length=prompt + 3)))
    done = tight.complete(question, GREEDY)
    assert done.notices == (
        f"max_new_tokens lowered from 12 to 3: the prompt uses {prompt} of the model's {prompt + 3}-token context",
    )
    assert (done.usage.completion_tokens, done.finish_reason) == (3, "length")


def test_context_overflow_names_the_numbers(checkpoint, backend):
    question = Conversation().with_user("too big", images=[image((300, 200))])
    prompt = backend.complete(question, GREEDY).usage.prompt_tokens
    tiny_context = make_backend("local", str(checkpoint), **vars(LocalBackendConfig.tiny(context_length=100)))
    with pytest.raises(ContextOverflowError) as info:
        tiny_context.stream(question, GREEDY)  # raised before any event
    assert info.value.prompt_tokens == prompt and info.value.context_length == 100
    assert f"needs {prompt} prompt tokens (70 of them for 1 image(s))" in str(info.value)
    assert "context holds 100 tokens" in str(info.value)


def test_a_silent_generation_times_out_and_the_model_stays_usable(checkpoint):
    slow = LocalBackend.load(str(checkpoint), LocalBackendConfig.tiny(token_timeout_s=0.3))
    original = slow.model.forward

    def stalled_forward(*args, **kwargs):
        time.sleep(0.8)
        return original(*args, **kwargs)

    slow.model.forward = stalled_forward
    started = time.monotonic()
    with pytest.raises(GenerationTimeout, match="no output for 0.3 s"):
        slow.complete(Conversation().with_user("hello"), GREEDY)
    assert time.monotonic() - started < 3.0
    slow.model.forward = original
    assert slow.complete(Conversation().with_user("hello"), GREEDY).finish_reason == "length"


def test_an_exception_in_the_generation_thread_surfaces_with_its_cause(checkpoint):
    broken = LocalBackend.load(str(checkpoint), LocalBackendConfig.tiny(token_timeout_s=30.0))

    def failing_forward(*args, **kwargs):
        raise RuntimeError("boom in forward")

    broken.model.forward = failing_forward
    started = time.monotonic()
    with pytest.raises(BackendError, match="generation failed: RuntimeError: boom in forward"):
        broken.complete(Conversation().with_user("hello"), GREEDY)
    assert time.monotonic() - started < 5.0  # not the 30 s streamer timeout


def test_bad_requests_are_rejected_before_generation(backend):
    with pytest.raises(BadRequestError, match="image 1 of 1"):
        backend.stream(Conversation().with_user("x", images=[b"\x89PNG truncated"]))
    with pytest.raises(BadRequestError, match="last user message is empty"):
        backend.stream(Conversation().with_user(""))
    with pytest.raises(BadRequestError, match="message 0 contains '<image>'"):
        backend.stream(Conversation().with_user("typed <image> by hand"))


def test_image_notices_come_before_the_answer(backend):
    frames = [Image.new("RGB", (40, 40), color) for color in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    events = list(backend.stream(Conversation().with_user("gif", images=[buffer.getvalue()]), GREEDY))
    assert events[0] == StreamEvent.notice("image 1: animated GIF: using the first of 3 frames")
    assert [e.kind for e in events[1:-1]] == ["delta"] * (len(events) - 2)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(BackendUnavailable, match="cannot load"):
        make_backend("local", str(tmp_path / "missing"), **vars(LocalBackendConfig.tiny()))
    with pytest.raises(BackendUnavailable, match="sglang backend"):
        make_backend("local", "llava-v1.6-vicuna-7b", **vars(LocalBackendConfig.tiny()))
    with pytest.raises(ValueError, match="needs CUDA"):
        LocalBackendConfig(device="cpu", quantization="4bit")
    with pytest.raises(ValueError, match="unknown template 'vicuna_v9'; valid names: .*vicuna_v1"):
        LocalBackendConfig(template="vicuna_v9")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
            make_backend("local", str(tmp_path), quantization="8bit", local_files_only=True)


def test_closed_backend_refuses_requests(checkpoint):
    closing = LocalBackend.load(str(checkpoint), LocalBackendConfig.tiny())
    closing.close()
    assert closing.health()["status"] == "closed"
    with pytest.raises(BackendUnavailable, match="closed"):
        closing.stream(Conversation().with_user("hi"))

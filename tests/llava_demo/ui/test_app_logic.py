"""The chat tab's logic without Gradio: chat-state steps, answer jobs and Stop, the backend pool, the paced
stream, model discovery, examples, feedback, the ZeroGPU switch and the AnyRes panel's numbers."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from PIL import Image

from llava_demo.backends.base import BackendUnavailable, CancelToken, SamplingParams, Usage, collect
from llava_demo.backends.images import prepare_images
from llava_demo.backends.local_prompt import ImageTokenCounter
from llava_demo.ui import chat_state as cs
from llava_demo.ui.anyres_panel import anyres_view, counter_for
from llava_demo.ui.backend_pool import BackendPool, ModelUnavailableError
from llava_demo.ui.decoded_uploads import DecodedUploads
from llava_demo.ui.examples import ExamplesError, load_examples
from llava_demo.ui.feedback import FeedbackLog
from llava_demo.ui.generations import GenerationJob, Outcome, SessionBusyError, SessionGenerations
from llava_demo.ui.model_choices import find_local_checkpoints, local_model_choices
from llava_demo.ui.paced_backend import PacedBackend
from llava_demo.ui.settings import ChatSettings
from tests.support.server_fakes import FakeBackend
from vision_common.anyres.geometry import AnyResConfig, num_image_tokens
from vision_common.chat.conversation import Conversation
from vision_common.chat.format_prompts import SHORT_ANSWER
from vision_common.images import sources
from vision_common.images.load import ImageLimits, load_image
from vision_common.zerogpu import gpu_decorator

SLOW_TOKENS = tuple(f" t{i}" for i in range(200))


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, str]:
    paths = {"wide": tmp_path / "wide.png", "square": tmp_path / "square.png"}
    Image.new("RGB", (100, 50), (200, 30, 30)).save(paths["wide"])
    Image.new("RGB", (32, 32), (30, 30, 200)).save(paths["square"])
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    Image.new("RGB", (300, 300)).save(tmp_path / "big.bmp")  # 270 KB uncompressed
    return {**{k: str(v) for k, v in paths.items()}, **{p.name: str(p) for p in tmp_path.iterdir()}}


def outcome(text: str = "an answer", finish: str | None = "stop", tokens: int = 3, **kw) -> Outcome:
    values = dict(
        text=text,
        finish_reason=finish,
        usage=Usage(10, tokens, 4),
        notices=(),
        error=None,
        error_code=None,
        seconds=0.5,
        first_token_s=0.1,
    )
    values.update(kw)
    return Outcome(**values)


# -- chat state ------------------------------------------------------------------------------------------


def test_response_format_is_appended_on_its_own_line():
    assert (
        cs.compose_text(" What colour? ", "Short answer (single word or phrase)")
        == f"What colour?\n{SHORT_ANSWER}"
    )
    assert cs.compose_text("Hi", cs.FREE_FORM) == "Hi"
    with pytest.raises(cs.ChatInputError, match="unknown response format"):
        cs.compose_text("Hi", "Haiku")


def test_bad_messages_are_refused_naming_the_file_and_the_reason(images):
    limits = DecodedUploads(ImageLimits(max_bytes=100_000))
    assert cs.check_message("hi", [images["wide"]], limits) == [images["wide"]]
    cases = [
        (("  ", []), "the message is empty"),
        (("x", [images["notes.txt"]]), "notes.txt was not accepted: not a recognised image file"),
        (("x", [images["corrupt.png"]]), "corrupt.png was not accepted"),
        (
            ("x", [images["big.bmp"]]),
            "big.bmp was not accepted: file is 270,054 bytes; the limit is 100,000 bytes",
        ),
        (("x" * 9000, []), "9,000 characters"),
        (("x", [images["wide"]] * 9), "at most 8"),
    ]
    for (text, files), expected in cases:
        with pytest.raises(cs.ChatInputError) as info:
            cs.check_message(text, files, limits)
        assert expected in str(info.value), str(info.value)


def test_a_conversation_keeps_every_image_and_regenerate_undo_step_back(images):
    state = cs.add_question(cs.ChatState(), "first?", [images["wide"]])
    with pytest.raises(cs.ChatInputError, match="still waiting"):
        cs.add_question(state, "again?", [])
    state = cs.add_answer(state, outcome("one"))
    state = cs.add_question(state, "second?", [images["square"]])
    state = cs.add_answer(state, outcome("two", "cancelled", tokens=5))
    assert state.images == (images["wide"], images["square"])
    assert state.notes == ("", "stopped after 5 tokens")

    again = cs.for_regenerate(state)
    assert (
        again.awaiting_answer and again.conversation.messages[-1].text == "second?" and again.notes == ("",)
    )
    undone, text, restored = cs.undo(state)
    assert (text, restored) == ("second?", [images["square"]])
    assert undone.conversation.last_role == "assistant" and undone.images == (images["wide"],)
    dropped, text, restored = cs.drop_question(again)
    assert (text, restored, dropped.conversation.messages[-1].text) == ("second?", [images["square"]], "one")
    with pytest.raises(cs.ChatInputError, match="nothing to undo"):
        cs.undo(cs.ChatState())
    with pytest.raises(cs.ChatInputError, match="no answer to regenerate"):
        cs.for_regenerate(cs.ChatState())


def test_chatbot_messages_show_images_then_text_and_notes_under_answers(images):
    state = cs.add_answer(
        cs.add_question(cs.ChatState(), "what?", [images["wide"]]), outcome("red", "length", 7)
    )
    shown = cs.chatbot_messages(cs.add_question(state, "more?", []), partial="bl")
    assert shown[0] == {
        "role": "user",
        "content": [{"path": images["wide"]}, {"type": "text", "text": "what?"}],
    }
    assert shown[1]["content"][0]["text"] == "red\n\n*[cut at the max-new-tokens limit (7 tokens)]*"
    assert shown[2]["content"] == [{"type": "text", "text": "more?"}]
    assert shown[3] == {"role": "assistant", "content": [{"type": "text", "text": "bl ▌"}]}


def test_status_lines_name_the_finish_reason_or_the_real_error():
    assert "finish_reason `cancelled` after 1 token " in cs.outcome_status(
        outcome(finish="cancelled", tokens=1)
    )
    assert "finish_reason `stop`, 3 tokens, 4 image tokens" in cs.outcome_status(outcome())
    failed = outcome(
        finish=None, error="model x: generation failed: RuntimeError: boom", error_code="backend_error"
    )
    assert (
        cs.outcome_status(failed)
        == "**Error** (backend_error): model x: generation failed: RuntimeError: boom"
    )


# -- answer jobs and Stop -------------------------------------------------------------------------------


def ask(text: str = "hi") -> Conversation:
    return Conversation().with_user(text)


def test_stop_cancels_the_backend_and_later_text_is_dropped():
    backend = FakeBackend(SLOW_TOKENS, delay_s=0.02)
    registry = SessionGenerations()
    job = registry.start("s1", GenerationJob(backend, ask(), SamplingParams(max_new_tokens=200), label="s1"))
    seen = next(p for p in job.watch() if len(p.text) >= 6)
    result = registry.stop("s1", wait_s=5)
    assert result is not None and result.cancelled and result.error is None
    assert backend.calls[0].cancel.cancelled  # the backend's own token, not just the UI
    assert result.text.startswith(seen.text) and result.usage.completion_tokens < 200
    assert result.text == "".join(SLOW_TOKENS[: result.usage.completion_tokens])
    registry.finish("s1", job)
    assert registry.last_outcome("s1") is result and registry.running("s1") is None


def test_a_stop_while_the_answer_is_queued_cancels_it_on_start_but_a_late_stop_does_not():
    registry = SessionGenerations()
    registry.expect("s")
    assert registry.stop("s") is None  # nothing running yet: remembered for the expected answer
    backend = FakeBackend(SLOW_TOKENS, delay_s=0.01)
    job = registry.start("s", GenerationJob(backend, ask(), SamplingParams(max_new_tokens=200)))
    assert job.wait(5).cancelled
    registry.finish("s", job)
    assert registry.stop("s") is None  # late Stop: no turn expected, so nothing is remembered
    registry.expect("s")
    quick = registry.start("s", GenerationJob(FakeBackend(), ask(), SamplingParams()))
    assert quick.wait(5).finish_reason == "stop" and quick.outcome.text == "Hello, world!"


def test_one_answer_at_a_time_per_session_and_failures_carry_the_real_message():
    registry = SessionGenerations()
    slow = registry.start("s", GenerationJob(FakeBackend(SLOW_TOKENS, delay_s=0.02), ask(), SamplingParams()))
    with pytest.raises(SessionBusyError, match="press Stop"):
        registry.start("s", GenerationJob(FakeBackend(), ask(), SamplingParams()))
    other = registry.start("t", GenerationJob(FakeBackend(), ask(), SamplingParams()))  # other sessions run
    assert other.wait(5).finish_reason == "stop"
    registry.stop("s")
    assert slow.outcome.cancelled
    failing = FakeBackend(fail_after=(2, BackendUnavailable("server at http://x went away")))
    failed = GenerationJob(failing, ask(), SamplingParams()).start().wait(5)
    assert failed.finish_reason is None and failed.text == "Hello,"
    assert (failed.error, failed.error_code) == ("server at http://x went away", "backend_unavailable")


def test_paced_stream_still_reports_the_inner_backends_cancel():
    inner = FakeBackend(SLOW_TOKENS)
    paced = PacedBackend(inner, delay_s=0.05)
    token = CancelToken()
    events = paced.stream(ask(), SamplingParams(max_new_tokens=200), token)
    kinds = []
    for event in events:
        kinds.append(event.kind)
        if len(kinds) == 3:
            token.cancel()
    assert inner.calls[0].cancel is token and kinds[-1] == "done"
    with pytest.raises(ValueError, match="delay_s"):
        PacedBackend(inner, delay_s=0)
    assert collect(PacedBackend(FakeBackend(), 0.001).stream(ask())).text == "Hello, world!"


# -- backends shared by sessions ------------------------------------------------------------------------


class ClosingFake(FakeBackend):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.label, self.closed = name, threading.Event()

    def close(self) -> None:
        self.closed.set()


def test_pool_loads_once_evicts_the_least_recently_used_and_explains_failures(tmp_path):
    loads: list[tuple] = []

    def factory(kind, model, **options):
        loads.append((kind, model, options.get("template")))
        return ClosingFake(model)

    pool = BackendPool(ChatSettings.tiny(max_loaded_models=2), factory)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b, tmp_path / "c"):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    first = pool.get(str(a))
    assert pool.get(str(a)) is first and len(loads) == 1
    second = pool.get(str(b))
    pool.get(str(a))  # a is now the most recently used, so loading c closes b
    pool.get(str(tmp_path / "c"))
    assert [key[0] for key in pool.loaded_models()] == [str(a), str(tmp_path / "c")]
    assert second.closed.wait(2) and not first.closed.is_set()
    assert pool.get(str(a), "vicuna_v1") is not first and loads[-1][2] == "vicuna_v1"
    assert first.closed.wait(2)  # a template override is another backend; plain a was now the oldest
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="has no config.json"):
        pool.get(str(empty))
    with pytest.raises(ModelUnavailableError, match="not an existing directory"):
        pool.get("/nonexistent/model/dir")
    remote = BackendPool(ChatSettings.tiny(backend="openai", server_url="http://box/v1"), factory)
    with pytest.raises(ModelUnavailableError, match="template override needs the local backend"):
        remote.get("served", "vicuna_v1")
    paced = BackendPool(ChatSettings.tiny(stream_delay_ms=10), factory).get(str(a))
    assert isinstance(paced, PacedBackend) and paced.delay_s == 0.01


# -- model discovery, examples, feedback, ZeroGPU -----------------------------------------------------


def write_config(folder: Path, model_type: str = "llava_next") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def test_checkpoints_are_found_under_the_roots_and_listed_after_the_presets(tmp_path):
    runs = tmp_path / "runs"
    final = write_config(runs / "s2" / "final")
    write_config(runs / "s2" / "final" / "inner")  # inside a checkpoint: not searched
    write_config(runs / "clip", model_type="clip")
    write_config(runs / ".tmp-staging" / "final")  # an atomic writer's half-written output
    write_config(runs / "a" / "b" / "c" / "d" / "too-deep")
    assert find_local_checkpoints([runs, tmp_path / "missing"]) == [final.resolve()]
    choices = local_model_choices({}, [runs], current="synthworld-llava-next", project_root=tmp_path)
    assert [(c.label, c.value) for c in choices] == [
        ("synthworld-llava-next (from --model)", "synthworld-llava-next"),
        ("runs/s2/final (checkpoint)", str(final.resolve())),
    ]


def test_examples_load_with_their_images_and_bad_files_are_named(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "scene_0.png")
    good = tmp_path / "examples.json"
    good.write_text(json.dumps([{"image": "scene_0.png", "question": " How many? ", "answer": "2"}]))
    [example] = load_examples(good)
    assert (example.image, example.question, example.answer) == (
        (tmp_path / "scene_0.png").resolve(),
        "How many?",
        "2",
    )
    bad = tmp_path / "bad.json"
    for document, expected in [
        ({"image": "x"}, "expected a JSON list"),
        ([{"image": "missing.png", "question": "q"}], "example 0: image"),
        ([{"image": "scene_0.png", "question": ""}], "example 0: field 'question'"),
    ]:
        bad.write_text(json.dumps(document))
        with pytest.raises(ExamplesError, match=expected):
            load_examples(bad)


def test_feedback_lines_stay_whole_under_concurrent_appends(tmp_path):
    log = FeedbackLog(tmp_path / "deep" / "feedback.jsonl")
    threads = [
        threading.Thread(
            target=lambda i=i: [log.append({"type": "like", "i": i, "pad": "x" * 5000}) for _ in range(20)]
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = log.path.read_text().splitlines()
    assert len(lines) == 80 and all(json.loads(line)["type"] == "like" for line in lines)


def test_zerogpu_decorator_is_the_identity_without_spaces_and_spaces_gpu_with_it(monkeypatch):
    def fn():
        return 1

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert gpu_decorator()(fn) is fn
    applied = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: lambda f: applied.append(duration) or f
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu_decorator(30)(fn) is fn and applied == [30]


# -- AnyRes panel ---------------------------------------------------------------------------------------


def test_anyres_panel_counts_what_the_processor_counts(images):
    counter = ImageTokenCounter(AnyResConfig.tiny(), "default", True)
    view = anyres_view(images["wide"], load_image(images["wide"], ImageLimits()), counter, "tiny")
    assert view.token_count == num_image_tokens((100, 50), AnyResConfig.tiny()) == 52
    assert len(view.crops) == view.plan.num_crops == 3
    assert [caption for _, caption in view.crops] == [
        "base: whole image",
        "tile 1 (row 1, col 1)",
        "tile 2 (row 1, col 2)",
    ]
    assert "**52 image tokens** for `wide.png` (100x50): 16 base + 32 grid + 4 row ends" in view.summary()
    default, source = counter_for(FakeBackend())
    assert default.anyres == AnyResConfig() and "LLaVA-1.6 defaults" in source


def test_an_in_process_model_is_slowed_per_forward_pass_until_closed():
    import torch

    class WithModel(FakeBackend):
        model = torch.nn.Linear(2, 2)

    inner = WithModel()
    paced = PacedBackend(inner, delay_s=0.05)
    assert paced.paces_model and paced.health()["paces_model"] is True
    started = time.monotonic()
    inner.model(torch.zeros(1, 2))
    assert time.monotonic() - started >= 0.05
    assert collect(paced.stream(ask())).text == "Hello, world!"  # the stream itself is not paced again
    paced.close()
    started = time.monotonic()
    inner.model(torch.zeros(1, 2))
    assert time.monotonic() - started < 0.05


def test_the_registry_forgets_the_oldest_sessions_beyond_its_cap():
    registry = SessionGenerations(remembered_sessions=2)
    for name in ("a", "b", "c"):
        registry.expect(name)
        job = registry.start(name, GenerationJob(FakeBackend(), ask(), SamplingParams()))
        job.wait(5)
        registry.finish(name, job)
    assert registry.last_outcome("a") is None and registry.last_outcome("c").text == "Hello, world!"


# -- one decode per upload --------------------------------------------------------------------------------


def test_an_upload_is_decoded_once_from_send_to_the_model(images, monkeypatch):
    """check_message, the AnyRes panel and the backend's image preparation share one decode of the file."""
    decodes: list[str] = []
    real = sources.load_image_bytes

    def counting(data, limits, *, source):
        decodes.append(source)
        return real(data, limits, source=source)

    monkeypatch.setattr(sources, "load_image_bytes", counting)
    uploads = DecodedUploads(ImageLimits(max_bytes=1_000_000))
    paths = cs.check_message("what is it?", [images["wide"]], uploads)
    panel_image = uploads.load(images["wide"])  # the AnyRes panel's read of the same file
    conversation = uploads.resolve(Conversation().with_user("what is it?", paths))
    prepared = prepare_images(conversation.images, uploads.limits)
    assert len(decodes) == 1
    assert prepared.images[0] is panel_image
    Image.new("RGB", (40, 20), "blue").save(images["wide"], format="PNG")  # the file changes: decoded anew
    assert uploads.load(images["wide"]).image.size == (40, 20) and len(decodes) == 2


def test_decoded_uploads_are_bounded_and_leave_urls_alone(tmp_path):
    uploads = DecodedUploads(ImageLimits(), capacity=2)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        paths.append(str(path))
        uploads.load(path)
    assert len(uploads._images) == 2
    url = "data:image/png;base64,AAAA"
    resolved = uploads.resolve(Conversation().with_user("x", [paths[0], url]))
    assert resolved.images[1] == url and resolved.images[0].image.getpixel((0, 0)) == (0, 0, 0)
    with pytest.raises(ValueError, match="capacity"):
        DecodedUploads(ImageLimits(), capacity=0)

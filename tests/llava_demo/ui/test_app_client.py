"""The app served in-process on a tiny LLaVA-NeXT, driven through its named API with ``gradio_client``: chat
with images (answers equal the in-process backend's), multi-turn and per-session state, Stop reaching the
backend, bad input refused with clear messages while the app keeps serving, tab registration, feedback."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_shell.settings import AppSettings
from app_shell.shell import DEFAULT_TABS, TabLoadError, build_app, launch, make_tabs
from llava_demo.backends.base import SamplingParams
from llava_demo.ui.chat_handlers import ChatHandlers
from llava_demo.ui.chat_services import ChatServices
from llava_demo.ui.chat_state import FREE_FORM, ChatState
from llava_demo.ui.chat_tab import tab_from_services
from llava_demo.ui.settings import ChatSettings
from vision_common.chat.conversation import Conversation

QUESTION = "What is in the picture?"
# Gradio 6.31 queueing calls pandas options that pandas 3 deprecates (gradio.md §12): harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def no_tab(settings: AppSettings) -> None:
    """A tab factory for a tab that cannot run here (used by the registration test)."""
    return None


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llava_endless_dir):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("app")
    model = tiny_llava_endless_dir  # answers run to max_new_tokens
    Image.new("RGB", (100, 50), (200, 30, 30)).save(root / "red.png")
    Image.new("RGB", (32, 32), (30, 30, 200)).save(root / "blue.png")
    (root / "notes.txt").write_text("not an image")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (root / "big.png").write_bytes(b"\x89PNG" + bytes(1_200_000))
    settings = ChatSettings.tiny(model=str(model), stream_delay_ms=20, feedback_log=root / "feedback.jsonl")
    services = ChatServices.create(settings)
    tab = tab_from_services(services)
    demo = build_app(AppSettings(chat=settings), [tab])
    _app, url = launch(demo, AppSettings(chat=settings), [tab], block=False)
    try:
        yield SimpleNamespace(url=url, root=root, services=services, model=str(model))
    finally:
        demo.close()
        services.close()


def client(served) -> Client:
    return Client(served.url, verbose=False)


def greedy(served, conversation: Conversation, max_new_tokens: int) -> str:
    backend = served.services.pool.get(served.model)
    return backend.complete(conversation, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)).text


def ask(c: Client, text: str, images: list[Path], max_new_tokens: int = 8, **options):
    return c.predict(
        text,
        [handle_file(str(p)) for p in images],
        0.0,
        0.7,
        max_new_tokens,
        options.pop("response_format", FREE_FORM),
        api_name="/chat",
        **options,
    )


@pytest.mark.slow
def test_public_api_is_chat_stop_and_new_conversation(served):
    named = client(served).view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert sorted(named) == ["/chat", "/new_conversation", "/stop"]
    defaults = {p["parameter_name"]: p.get("parameter_default") for p in named["/chat"]["parameters"]}
    assert (defaults["temperature"], defaults["top_p"], defaults["max_new_tokens"]) == (0.2, 0.7, 512)


@pytest.mark.slow
def test_chat_with_images_over_two_turns_matches_the_in_process_answers(served):
    c = client(served)
    red, blue = served.root / "red.png", served.root / "blue.png"
    answer1, info1 = ask(c, QUESTION, [red])
    first = Conversation().with_user(QUESTION, [str(red)])
    assert answer1 == greedy(served, first, 8)
    assert info1["finish_reason"] == "length" and info1["completion_tokens"] == 8
    assert info1["image_tokens"] == 52  # tiny AnyRes: 100x50 -> 52 (tests/support/tiny_llava.py)
    answer2, info2 = ask(c, "And this one?", [blue])
    second = first.with_assistant(answer1).with_user("And this one?", [str(blue)])
    assert answer2 == greedy(served, second, 8)
    assert info2["image_tokens"] == 52 + 36  # both images stay in the conversation
    c.predict(api_name="/new_conversation")
    _, fresh = ask(c, QUESTION, [blue])
    assert fresh["image_tokens"] == 36


@pytest.mark.slow
def test_sessions_are_independent_under_concurrency(served):
    results: dict[str, dict] = {}

    def chat(name: str, image: str) -> None:
        c = client(served)
        ask(c, QUESTION, [served.root / image])
        results[name] = ask(c, "Again?", [], max_new_tokens=4)[1]

    threads = [
        threading.Thread(target=chat, args=(n, img)) for n, img in (("a", "red.png"), ("b", "blue.png"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results["a"]["image_tokens"] == 52 and results["b"]["image_tokens"] == 36


@pytest.mark.slow
def test_stop_cancels_the_answer_in_the_backend(served):
    c = client(served)
    job = c.submit(
        QUESTION, [handle_file(str(served.root / "red.png"))], 0.2, 0.7, 512, FREE_FORM, api_name="/chat"
    )
    for _ in range(400):
        if job.outputs() and job.outputs()[-1][0]:
            break
        job.status()
        threading.Event().wait(0.05)
    stopped = c.predict(api_name="/stop")
    assert stopped["stopped"] is True and stopped["finish_reason"] == "cancelled"
    assert 0 < stopped["completion_tokens"] < 512
    answer, info = job.result(timeout=30)
    assert info["finish_reason"] == "cancelled" and answer
    assert c.predict(api_name="/stop")["stopped"] is False  # nothing left to stop


@pytest.mark.slow
def test_bad_input_gets_a_clear_message_and_the_app_keeps_serving(served):
    c = client(served)
    cases = [
        ("What?", [served.root / "notes.txt"], "notes.txt was not accepted: not a recognised image file"),
        ("What?", [served.root / "corrupt.png"], "corrupt.png was not accepted"),
        ("   ", [], "the message is empty"),
    ]
    for text, images, expected in cases:
        with pytest.raises(AppError, match=expected):
            ask(c, text, images)
    with pytest.raises(AppError, match="not an existing directory"):
        ask(c, QUESTION, [], model="/nonexistent/model")
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        ask(c, "What?", [served.root / "big.png"])  # the client checks the limit the app publishes
    with (served.root / "big.png").open("rb") as handle:  # and the server refuses it without the client
        response = httpx.post(f"{served.url}gradio_api/upload", files={"files": handle}, timeout=30)
    assert response.status_code == 413
    answer, info = ask(c, QUESTION, [served.root / "red.png"], max_new_tokens=3)
    assert info["finish_reason"] == "length" and info["completion_tokens"] == 3


@pytest.mark.slow
def test_likes_are_appended_to_the_feedback_log(served):
    handlers = ChatHandlers(served.services)
    red = str(served.root / "red.png")
    state = ChatState(Conversation().with_user("Colour?", [red]).with_assistant("red"), ("",))
    request = SimpleNamespace(session_hash="abc")
    status = handlers.record_feedback(state, "tiny", SimpleNamespace(index=1, liked=False), request)
    assert "recorded your dislike" in status
    record = json.loads(served.services.feedback.path.read_text().splitlines()[-1])
    assert {k: record[k] for k in ("type", "question", "answer", "images", "session")} == {
        "type": "dislike",
        "question": "Colour?",
        "answer": "red",
        "images": ["red.png"],
        "session": "abc",
    }
    assert "cannot match" in handlers.record_feedback(
        state, "tiny", SimpleNamespace(index=0, liked=True), request
    )


@pytest.mark.slow
def test_tabs_come_from_factories_and_bad_factories_are_named(served):
    settings = AppSettings(chat=ChatSettings.tiny(model=served.model))
    chat = DEFAULT_TABS[0]
    tabs = make_tabs(settings, [chat, no_tab])
    assert [(tab.title, tab.tab_id) for tab in tabs] == [("Visual chat", "chat")]
    with pytest.raises(TabLoadError, match="returned str, not an AppTab"):
        make_tabs(settings, [lambda _settings: "tab"])
    with pytest.raises(TabLoadError, match="share the id 'chat'"):
        make_tabs(settings, [chat, chat])


def test_a_missing_model_is_explained_inline_and_the_question_is_kept(tmp_path):
    missing = str(tmp_path / "not-trained-yet")
    services = ChatServices.create(ChatSettings.tiny(model=missing, preload=True))
    services.preload()  # logs the problem; start-up goes on
    handlers = ChatHandlers(services)
    assert handlers.model_banner(missing).startswith(f"⚠️ **Model `{missing}` is not available.**")
    assert "not an existing directory" in handlers.model_banner(missing)
    image = tmp_path / "red.png"
    Image.new("RGB", (100, 50)).save(image)
    asked = ChatState(Conversation().with_user("What?", [str(image)]))
    request = SimpleNamespace(session_hash="s")
    *_, (state, shown, status, box) = handlers.respond(asked, missing, None, 0.2, 0.7, 8, request)
    assert "**Error:**" in status and "not an existing directory" in status
    assert state == ChatState() and shown == [] and box == {"text": "What?", "files": [str(image)]}
    tab = tab_from_services(services)
    # Only the shipped examples folder (when assets/ has one) may be served; never the missing model's path.
    assert tab.tab_id == "chat"
    assert all(Path(p).name == "examples" for p in tab.allowed_paths)
    assert not any(missing in str(p) for p in tab.allowed_paths)

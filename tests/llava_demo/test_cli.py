"""The chat CLI: the interactive loop on a scripted backend, start-up errors, and one shot in a subprocess on a
tiny real model (its output must equal the in-process greedy answer)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from llava_demo import cli
from llava_demo.backends.base import BackendUnavailable, SamplingParams
from llava_demo.server.cli import StartupError, check_local_model
from tests.support.paths import REPO_ROOT
from tests.support.server_fakes import FakeBackend
from vision_common.chat.conversation import Conversation, Message
from vision_common.images.load import ImageLimits


def scripted(lines: list[str]):
    """``input`` replacement: returns the lines in order, then EOFError (Ctrl-D); a line may be an exception."""
    queue: Iterator[str] = iter(lines)

    def read_line(prompt: str) -> str:
        try:
            item = next(queue)
        except StopIteration:
            raise EOFError from None
        if isinstance(item, BaseException):
            raise item
        return item

    return read_line


class InterruptingWriter(io.StringIO):
    """Raises KeyboardInterrupt on the n-th write, as Ctrl-C would arrive while the answer is printed."""

    def __init__(self, interrupt_at: int) -> None:
        super().__init__()
        self.writes, self.interrupt_at = 0, interrupt_at

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes == self.interrupt_at:
            raise KeyboardInterrupt
        return super().write(text)


def run_repl(backend: FakeBackend, lines: list, out: io.StringIO | None = None) -> tuple[int, str, str]:
    out = out or io.StringIO()
    err = io.StringIO()
    code = cli.repl(
        backend, SamplingParams.tiny(), read_line=scripted(lines), out=out, err=err, limits=ImageLimits()
    )
    return code, out.getvalue(), err.getvalue()


def test_repl_turns_images_reset_and_quit(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(image)
    backend = FakeBackend()
    lines = [
        "hello",
        f"/image {image}",
        "/image",
        "/nope",
        "what is it?",
        "/reset",
        "again",
        "/quit",
        "never sent",
    ]
    code, out, err = run_repl(backend, lines)
    assert code == cli.EXIT_OK
    assert out == "Hello, world!\n" * 3
    assert "usage: /image PATH" in err and "unknown command '/nope'" in err and "[new conversation]" in err
    first, second, third = (call.conversation for call in backend.calls)
    assert [(m.role, m.text) for m in first.messages] == [("user", "hello")]
    # The second question carries the staged image and the first exchange as history.
    assert [(m.role, m.text, len(m.images)) for m in second.messages] == [
        ("user", "hello", 0),
        ("assistant", "Hello, world!", 0),
        ("user", "what is it?", 1),
    ]
    assert [(m.role, m.text) for m in third.messages] == [("user", "again")]  # after /reset


def test_ctrl_c_stops_the_answer_not_the_program() -> None:
    backend = FakeBackend(tokens=("a", "b", "c", "d"))
    out = InterruptingWriter(interrupt_at=2)  # Ctrl-C while the second token is printed
    code, _, err = run_repl(backend, ["first", KeyboardInterrupt(), "second"], out=out)
    assert code == cli.EXIT_OK
    assert "[stopped]" in err and "type /quit to leave" in err
    first, second = backend.calls
    assert first.cancel.cancelled and first.finished.is_set()
    # The partial answer stays in the history, and the program answered the next message in full.
    assert [(m.role, m.text) for m in second.conversation.messages] == [
        ("user", "first"),
        ("assistant", "a"),
        ("user", "second"),
    ]
    assert not second.cancel.cancelled


def test_backend_error_keeps_the_repl_running_and_the_images_staged(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(image)
    backend = FakeBackend(
        fail_before=BackendUnavailable("cannot connect to the server at http://127.0.0.1:9/v1")
    )
    code, out, err = run_repl(backend, [f"/image {image}", "hi", "hi again"])
    assert code == cli.EXIT_OK and out == "\n"  # only the newline printed on Ctrl-D
    assert err.count("error: cannot connect to the server at http://127.0.0.1:9/v1") == 2
    # The failed message is not in the history, and its image is still attached for the retry.
    assert [len(call.conversation.messages) for call in backend.calls] == [1, 1]
    assert [len(call.conversation.images) for call in backend.calls] == [1, 1]


def test_start_up_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--prompt", "hi", "--template", "nope"]) == cli.EXIT_USAGE
    assert "unknown template 'nope'; valid names:" in capsys.readouterr().err
    assert cli.main(["--prompt", "hi", "--image", str(tmp_path / "missing.png")]) == cli.EXIT_USAGE
    assert "missing.png" in capsys.readouterr().err
    assert cli.main(["--prompt", " "]) == cli.EXIT_USAGE
    assert "nothing to ask" in capsys.readouterr().err
    assert cli.main(["--prompt", "hi", "--model", str(tmp_path / "no-such-dir")]) == cli.EXIT_USAGE
    assert "not an existing directory" in capsys.readouterr().err
    with pytest.raises(StartupError, match="embedded model 'synthworld-llava-next' is not built yet"):
        check_local_model("synthworld-llava-next", project_root=tmp_path)


@pytest.mark.slow
def test_one_shot_subprocess_on_a_tiny_model(tmp_path: Path, tiny_llava_dir: Path) -> None:
    model = tiny_llava_dir
    image = tmp_path / "scene.png"
    Image.new("RGB", (100, 50), (200, 30, 30)).save(image)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "llava_demo.cli",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--image",
        str(image),
    ]
    command += ["--prompt", "What is in the picture?", "--temperature", "0", "--max-tokens", "8"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    from llava_demo.backends.local import LocalBackend, LocalBackendConfig

    with LocalBackend.load(str(model), LocalBackendConfig.tiny()) as backend:
        expected = backend.complete(
            Conversation((Message("user", "What is in the picture?", (str(image),)),)),
            SamplingParams(temperature=0.0, max_new_tokens=8),
        )
    assert expected.text
    assert result.stdout == expected.text + "\n"

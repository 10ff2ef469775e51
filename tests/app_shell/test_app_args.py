"""``python app.py`` configuration: flags, their APP_* variables, Spaces defaults, and clear refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app_shell.args import ENV_OPTIONS, parse_settings
from llava_demo.ui.settings import ChatSettings, SettingsError
from tests.support.paths import REPO_ROOT


def test_defaults_serve_this_machine_only_with_the_embedded_model():
    settings = parse_settings([], environ={}).chat
    assert (settings.host, settings.port, settings.backend) == ("127.0.0.1", 7860, "local")
    assert settings.model == "synthworld-llava-next"
    assert (settings.max_upload_mb, settings.concurrency, settings.preload) == (20, 1, True)
    assert settings.loopback_only


def test_on_spaces_the_app_listens_on_all_interfaces_and_gradios_port():
    settings = parse_settings([], environ={"SPACE_ID": "someone/app", "GRADIO_SERVER_PORT": "7861"}).chat
    assert (settings.host, settings.port) == ("0.0.0.0", 7861)
    assert not settings.loopback_only


def test_variables_set_options_and_flags_win_over_variables():
    env = {
        "APP_PORT": "9000",
        "APP_MODEL": "/models/x",
        "APP_MAX_UPLOAD_MB": "5",
        "APP_CONCURRENCY": "3",
        "APP_FEEDBACK_LOG": "",
        "APP_PRELOAD": "no",
        "APP_STREAM_DELAY_MS": "25",
    }
    settings = parse_settings([], environ=env).chat
    assert (settings.port, settings.model, settings.max_upload_mb, settings.concurrency) == (
        9000,
        "/models/x",
        5,
        3,
    )
    assert settings.feedback_log is None and settings.preload is False and settings.stream_delay_ms == 25
    flagged = parse_settings(["--port", "9100", "--concurrency", "2"], environ=env).chat
    assert (flagged.port, flagged.concurrency, flagged.model) == (9100, 2, "/models/x")


def test_server_urls_choose_the_backend_and_contradictions_are_refused(capsys):
    assert parse_settings(["--sglang-url", "http://gpu:30000"], environ={}).chat.backend == "sglang"
    openai = parse_settings(["--openai-url", "http://box/v1", "--model", "m"], environ={}).chat
    assert (openai.backend, openai.server_url) == ("openai", "http://box/v1")
    assert parse_settings([], environ={"APP_LAUNCH_SGLANG": "1"}).chat.launch_sglang
    for argv, expected in [
        (["--backend", "openai"], "--backend openai needs --openai-url"),
        (["--sglang-url", "http://a", "--openai-url", "http://b"], "not both"),
        (["--backend", "sglang"], "exactly one of --sglang-url"),
        (["--port", "70000"], "--port must be an integer in 0..65535"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
        (["--stream-delay-ms", "-5"], "--stream-delay-ms"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            parse_settings(argv, environ={})
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err


def test_a_bad_variable_is_named_without_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_settings([], environ={"APP_PORT": "eighty"})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "APP_PORT='eighty'" in err and "Traceback" not in err


def test_settings_validation_and_derived_values():
    settings = ChatSettings.tiny(max_upload_mb=2)
    assert settings.max_upload_bytes == 2 * 1024 * 1024
    assert settings.image_limits().max_bytes == 2 * 1024 * 1024
    assert settings.image_limits().allow_remote_urls is False
    assert settings.backend_options()["device"] == "cpu"
    remote = ChatSettings.tiny(backend="openai", server_url="http://box/v1", api_key="k")
    assert (
        remote.backend_options()["base_url"] == "http://box/v1" and remote.backend_options()["api_key"] == "k"
    )
    with pytest.raises(SettingsError, match="need --backend sglang or openai"):
        ChatSettings.tiny(server_url="http://box/v1")
    with pytest.raises(SettingsError, match="--examples"):
        ChatSettings.tiny(examples_file=Path("/nonexistent/examples.json"))


@pytest.mark.slow
def test_help_documents_every_flag_and_variable_and_does_not_import_gradio():
    result = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for option in ENV_OPTIONS:
        assert option.variable in result.stdout, option.variable
    for flag in (
        "--backend",
        "--model",
        "--sglang-url",
        "--launch-sglang",
        "--host",
        "--port",
        "--max-upload-mb",
    ):
        assert flag in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from app_shell.args import parse_settings; parse_settings([]); "
            "print('gradio' in sys.modules)",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "False", probe.stderr


def test_the_explorer_tab_owns_its_index_flag(tmp_path):
    settings = parse_settings(["--react-index", str(tmp_path)], environ={})
    assert settings.explorer.user_indexes == (tmp_path.resolve(),)
    assert settings.chat.model == "synthworld-llava-next"  # the chat's settings know nothing of the explorer
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--react-index", str(tmp_path / "missing")], environ={})
    assert exit_info.value.code == 2


def test_models_trained_in_the_launcher_workspace_are_offered_to_the_chat(tmp_path):
    settings = parse_settings(["--workspace", str(tmp_path / "ws")], environ={})
    assert settings.launcher.enabled and settings.launcher.workspace == tmp_path / "ws"
    assert tmp_path / "ws" in settings.chat.checkpoint_roots
    assert settings.explorer.job_workspace == (tmp_path / "ws").resolve()  # its index-build jobs' indexes
    remote = parse_settings(["--host", "0.0.0.0"], environ={})
    assert not remote.launcher.enabled and "launcher token" in remote.launcher.disabled_reason
    assert remote.explorer.job_workspace is None


def test_the_explorer_world_is_a_flag(tmp_path):
    settings = parse_settings(["--react-world", str(tmp_path)], environ={})
    assert settings.explorer.world == tmp_path.resolve() and settings.explorer.tasks_dir == tmp_path / "tasks"
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--react-world", str(tmp_path / "missing")], environ={})
    assert exit_info.value.code == 2

"""``python -m tests.support.launcher_app APP_FLAGS``: the app as ``app.py`` runs it (the same flags, shell,
startup, launch and close), with only the launcher tab, whose job types include the stand-in ``fake`` job.

The fault tests kill and restart this process: it owns a ``JobManager`` and its scheduler on the workspace
exactly as the app does, without minutes of loading the chat and explorer tabs on a two-core machine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app_shell.args import parse_settings
from app_shell.shell import build_app, close_tabs, launch, run_startup
from tests.support.launcher_fake import FAKE
from trainer.launcher.job_types import JOB_TYPES
from trainer.launcher.manager import JobManager
from trainer.launcher.tab import JobScheduler, LauncherActions, build_launcher_tab
from vision_common.app_tab import AppTab


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    launcher = settings.launcher
    # The manager as ``launcher_tab`` builds it, with the stand-in job type registered beside the real ones.
    manager = JobManager(launcher.workspace, concurrency=launcher.concurrency, max_queued=launcher.max_queued,
                         job_types={"fake": FAKE, **JOB_TYPES}, grace_s=5.0)  # fmt: skip
    scheduler, actions = JobScheduler(manager), LauncherActions(manager, launcher)
    tab = AppTab("Training launcher", "launcher", lambda: build_launcher_tab(actions), scheduler.start,
                 scheduler.stop)  # fmt: skip
    run_startup([tab])
    demo = build_app(settings, [tab])
    try:
        launch(demo, settings, [tab], block=True)
    finally:
        close_tabs([tab])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The headless browser the dashboard's browser test drives (tests/integration/test_dashboard_browser.py):
Debian's chromium and its chromedriver, installed with apt-get when missing, never downloaded
otherwise. `python -m deploy.local_stack.browser` (deploy/run-tests.sh runs it) prints both paths."""

from __future__ import annotations

from deploy.local_stack.system import ensure_command

PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver"}


def ensure_browser() -> dict[str, str]:
    """Paths of chromium and chromedriver, installing the Debian packages that are missing."""
    return {command: ensure_command(command, package) for command, package in PACKAGES.items()}


if __name__ == "__main__":
    for name, path in ensure_browser().items():
        print(f"{name}: {path}")

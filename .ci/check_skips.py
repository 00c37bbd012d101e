"""Fail CI when a test was skipped for a reason not in .ci/allowed-skips.txt.

Usage: python .ci/check_skips.py JUNIT_XML [ALLOWLIST]. Reads pytest's JUnit report (``--junitxml``),
prints what ran (tests, failures, errors, skips) and every skip with its reason, marked allowed or not,
and exits 1 when any skip is not allowed or the report is missing. The report is pytest's own output on
this machine, so the standard XML parser is enough.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

DEFAULT_ALLOWLIST = Path(__file__).with_name("allowed-skips.txt")


def load_allowlist(path: Path) -> list[tuple[re.Pattern, str]]:
    rules = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, why = line.partition("  # ")
        if not why.strip():
            raise SystemExit(f"{path}:{number}: give the reason after '  # '")
        rules.append((re.compile(pattern.strip()), why.strip()))
    return rules


def skips(report: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(counts, [(test id, skip reason)]) from a JUnit report."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(s.get(key, 0)) for s in suites)
              for key in ("tests", "failures", "errors", "skipped")}
    found = []
    for case in root.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            test = "::".join(part for part in (case.get("classname"), case.get("name")) if part)
            found.append((test, skipped.get("message") or (skipped.text or "").strip()))
    return counts, found


def check(report: Path, allowlist: Path = DEFAULT_ALLOWLIST) -> int:
    if not report.is_file():
        print(f"check_skips: no test report at {report} (did pytest run?)")
        return 1
    rules = load_allowlist(allowlist)
    counts, found = skips(report)
    print(f"check_skips: {counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
          f"{counts['skipped']} skipped")
    refused = 0
    for test, reason in found:
        why = next((why for pattern, why in rules if pattern.match(reason)), None)
        if why is None:
            refused += 1
            print(f"NOT ALLOWED  {test}: skipped ({reason})")
        else:
            print(f"allowed      {test}: skipped ({reason}) -- {why}")
    if refused:
        print(f"check_skips: {refused} test(s) skipped for a reason CI does not accept; make them run, or "
              f"add the reason to {allowlist.name} if this machine truly cannot have what they need")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    sys.exit(check(Path(sys.argv[1]), *(Path(a) for a in sys.argv[2:])))

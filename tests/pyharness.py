"""tests/pyharness.py — the pass / fail counter the Python end-to-end tests share
(test_import.py, test_report.py, test_predict.py). Each check prints one line,
"PASS what  (detail)" or "FAIL what  (detail)" (paren=False: "  detail" without the
parentheses), flushed at once; the test prints T.summary() ("N passed, N failed") last.
Not a test itself (tests/run.sh runs test_*.py only); import it with the test's directory
on sys.path."""


class Checks:
    def __init__(self, paren=True):
        self.passed = self.failed = 0
        self.paren = paren

    def check(self, what, ok, detail=""):
        """counts ok (truthy: pass), prints the line, returns ok"""
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        if detail:
            what += f"  ({detail})" if self.paren else f"  {detail}"
        print(("PASS " if ok else "FAIL ") + what, flush=True)
        return ok

    def summary(self, extra_failed=0):
        return f"{self.passed} passed, {self.failed + extra_failed} failed"

    def missing(self, line):
        """a test that cannot start (no vita binary): prints line and a summary of one
        failure; returns the exit code 1"""
        print(line)
        print("0 passed, 1 failed")
        return 1

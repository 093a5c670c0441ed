"""Break one property at a time, in a throw-away clone, and check that its test fails.

    python scripts/check_mutations.py [name fragment ...]

Each row names a property the tests promise (issue: reliability and security), the one
line that keeps it, a line that breaks it, and the test that must then fail. The clone
is made from HEAD in a temporary directory, so the working tree is never touched.
Prints CAUGHT or MISSED per row and exits 1 when any was missed. Takes ~5 minutes.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

MUTATIONS = [
    (
        "no look-up before creating",
        "open_connectors/client.py",
        "            existing = await self.find_instances(tags=[idempotency_tag])",
        "            existing = []",
        "tests/e2e/test_faults.py::test_a_lost_answer_to_the_creation_still_ends_with_one_saved_instance",
    ),
    (
        "transient statuses not retried",
        "open_connectors/retry.py",
        "        return status_code in statuses",
        "        return False",
        "tests/e2e/test_faults.py::test_transient_failures_are_retried_and_the_run_completes",
    ),
    (
        "Retry-After not capped",
        "open_connectors/retry.py",
        "            return min(max(retry_after, 0.0), self.max_retry_after)",
        "            return min(max(retry_after, 0.0), self.max_retry_after * 10)",
        "tests/e2e/test_faults.py::test_a_long_retry_after_is_capped",
    ),
    (
        "a 4xx retried",
        "open_connectors/retry.py",
        "NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})",
        "NOT_PROCESSED_STATUSES = frozenset({400, 408, 429, 503})",
        "tests/e2e/test_faults.py::test_client_errors_are_not_retried",
    ),
    (
        "the code logged",
        "flows/authenticate.py",
        '            "Authorization received%s.",',
        '            "Authorization received%s." + grant.code.get_secret_value(),',
        "tests/e2e/test_authorization.py::test_approval_pasted_as_the_redirect_address_creates_one_saved_instance",
    ),
    (
        "receiver trusts any state",
        "callback_receiver/resumer.py",
        "        return state_matches(state, derive_state(run.id, secret))",
        "        return True",
        "tests/e2e/test_callback_receiver.py::test_forged_and_malformed_callbacks_change_nothing",
    ),
    (
        "receiver does not wait for the wait",
        "callback_receiver/resumer.py",
        "            elif _already_answered(run):",
        "            elif True:",
        "tests/e2e/test_callback_receiver.py::test_an_answer_arriving_before_the_run_waits_is_not_lost",
    ),
    (
        "unknown connectors accepted",
        "open_connectors/connectors.py",
        "    if profile is None:\n        raise",
        "    if profile is None and False:\n        raise",
        "tests/e2e/test_hostile_input.py",
    ),
    (
        "answer not deleted",
        "flows/authenticate.py",
        "        await _forget_answer(answer, run)",
        "        pass",
        "tests/e2e/test_authorization.py::test_approval_pasted_as_the_redirect_address_creates_one_saved_instance",
    ),
]


def main(only: list[str]) -> int:
    """Run the selected mutations (all by default); return 1 if a test missed one."""
    project = pathlib.Path(__file__).resolve().parent.parent
    missed = 0
    with tempfile.TemporaryDirectory(prefix="mutations-") as directory:
        root = pathlib.Path(directory) / "project"
        subprocess.run(["git", "clone", "-q", str(project), str(root)], check=True)
        subprocess.run(["uv", "sync", "--frozen", "-q"], cwd=root, check=True)
        for name, path, old, new, test in MUTATIONS:
            if only and not any(fragment in name for fragment in only):
                continue
            file = root / path
            text = file.read_text()
            if old not in text:
                print(f"STALE: {name}: the line to break is no longer in {path}", flush=True)
                missed += 1
                continue
            file.write_text(text.replace(old, new, 1))
            try:
                result = subprocess.run(
                    ["uv", "run", "--frozen", "pytest", "-x", "-q", "-p", "no:cacheprovider", test],
                    cwd=root,
                    capture_output=True,
                    text=True,
                    timeout=1200,
                    check=False,
                )
            finally:
                file.write_text(text)
            caught = result.returncode != 0
            missed += not caught
            print(f"{'CAUGHT' if caught else 'MISSED'}: {name} ({test})", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

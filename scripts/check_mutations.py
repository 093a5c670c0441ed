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
        "        found = await look_up()\n        if found is not None:",
        "        found = None\n        if found is not None:",
        "tests/unit/test_client_at_most_once.py",
    ),
    (
        "the code resent after an ambiguous answer",
        "open_connectors/client.py",
        '                why = f"the answer to the request was lost ({answer.what})"',
        "                return EnsuredInstance(await send(), created=True)",
        "tests/e2e/test_faults.py::test_processed_then_504_with_a_lagging_list_sends_the_code_once",
    ),
    (
        "adoption without the tag check",
        "open_connectors/client.py",
        "        ids = sorted({instance.id for instance in listed if tag in instance.tags})",
        "        ids = sorted({instance.id for instance in listed})",
        "tests/unit/test_client_at_most_once.py",
    ),
    (
        "a Retry asks and sends again after an unknown outcome",
        "flows/authenticate.py",
        '    if await CodeSentMarker(run_id, "creation").exists():',
        "    if False:",
        "tests/e2e/test_faults.py::test_a_lag_longer_than_the_look_up_fails_in_words_and_a_retry_of_the_run_adopts",
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
        "flows/steps/waiting.py",
        '            "Authorization received%s.",',
        '            "Authorization received%s." + grant.code.get_secret_value(),',
        "tests/e2e/test_authorization.py::test_approval_pasted_as_the_redirect_address_creates_one_saved_instance",
    ),
    (
        "a bare code accepted",
        "open_connectors/authorization.py",
        "        bare_code_allowed = allow_bare_code and not empty_state_in_address",
        "        bare_code_allowed = True",
        "tests/unit/test_tasks_waiting.py::test_a_bare_code_is_refused_with_words_to_paste_the_whole_address",
    ),
    (
        "the state signed with the client secret",
        "flows/authenticate.py",
        "    state = state_key.signer().sign(current_flow_run_id())",
        "    state = type(state_key.signer())(app.api_secret).sign(current_flow_run_id())",
        "tests/unit/test_tasks_consent.py",
    ),
    (
        "receiver trusts any state",
        "callback_receiver/signing.py",
        "            return signer.verify(state), signer",
        "            return parse_state(state)[0], signer",  # type: ignore[index]
        "tests/unit/test_callback_receiver.py",
    ),
    (
        "receiver does not wait for the next wait",
        "callback_receiver/resumer.py",
        "            delay = next(delays, None)",
        "            delay = None",
        "tests/unit/test_callback_receiver.py",
    ),
    (
        "a silent block overwrite",
        "flows/steps/blocks.py",
        "        if _same_authorization(existing, saved):",
        "        if True:",
        "tests/e2e/test_hot_wait.py::test_a_block_name_taken_while_a_run_waited_is_not_overwritten",
    ),
    (
        "a connector that is not OAuth 2.0 accepted",
        "open_connectors/definitions.py",
        "    if definition.is_oauth2:\n        return",
        "    if True:\n        return",
        "tests/unit/test_connector_definitions.py",
    ),
    (
        "answer not deleted",
        "flows/steps/waiting.py",
        "        await _forget_answer(answer, run)",
        "        pass",
        "tests/e2e/test_authorization.py::test_approval_pasted_as_the_redirect_address_creates_one_saved_instance",
    ),
    (
        "a used code bound to the hot wait's key, not to its prompt",
        "open_connectors/authorization.py",
        '    return prompt_of(value["wait"]) == prompt_of(wait_key)',
        '    return value["wait"] == wait_key',
        "tests/unit/test_tasks_waiting.py",
    ),
    (
        "a failed resume keeps the code marked used",
        "callback_receiver/resumer.py",
        "            if not await self._still_unanswered(run_id, wait_key):",
        "            if True:",
        "tests/unit/test_callback_receiver.py",
    ),
    (
        "a prompt that ended in its hot wait asked again",
        "flows/steps/waiting.py",
        "        if suspend and hot_key in fired and key not in fired:",
        "        if False:",
        "tests/e2e/test_hot_wait.py::test_a_prompt_that_ended_in_its_hot_wait_is_not_asked_again_after_a_suspension",
    ),
    (
        "a token Prefect could not store left unsaved",
        "flows/steps/failure.py",
        "    return isinstance(state.data, PlatformUnavailableError | InstanceTokenNotSavedError)",
        "    return isinstance(state.data, PlatformUnavailableError)",
        "tests/unit/test_tasks_create.py",
    ),
    (
        "the fork server killed by a SIGTERM to the group",
        "deployments/fork_server_signals.py",
        "if imported_by_fork_server():",
        "if False:",
        "tests/unit/test_fork_server.py",
    ),
    (
        "a stopping serving process that lets Prefect cancel its hot waits",
        "deployments/hand_over.py",
        "        if self.stopping and seconds > 0:",
        "        if False:",
        "tests/unit/test_hand_over.py",
    ),
    (
        "a hot wait that a SIGTERM ends as a crash",
        "flows/steps/hot_wait.py",
        "    signal.signal(signal.SIGTERM, end_wait)\n",
        "    pass\n",
        "tests/unit/test_tasks_hot_wait.py",
    ),
    (
        "a resumed run taken by two processes",
        "flows/steps/hot_wait.py",
        'the run goes on there.")\n        return resumed',
        'the run goes on there.")\n        return None',
        "tests/unit/test_tasks_hot_wait.py",
    ),
    (
        "a hot wait deaf to the request to end it",
        "flows/steps/hot_wait.py",
        "                    changes.request_end()",
        "                    changes.notify()",
        "tests/unit/test_hot_wait_wakeups.py",
    ),
    (
        "an orphaned hot wait that takes the answer with nobody supervising it",
        "flows/steps/hot_wait.py",
        "        asyncio.create_task(_follow_supervision(changes)),\n",
        "",
        "tests/unit/test_tasks_hot_wait.py",
    ),
    (
        "an orphan that claims an answer arriving before it sees its worker gone",
        "flows/steps/hot_wait.py",
        "sigterm.received or sigterm.changes.end_requested or sigterm.changes.unsupervised()",
        "sigterm.received or sigterm.changes.end_requested",
        "tests/unit/test_tasks_hot_wait.py",
    ),
    (
        "a run forked by the fork server blind to its runner's end",
        "flows/steps/supervision.py",
        "            gone = not self._runner.is_alive()",
        "            gone = os.getppid() != self._parent_pid",
        "tests/unit/test_supervision.py",
    ),
    (
        "an orphaned hot wait ended by its own console log",
        "flows/steps/hot_wait.py",
        "            silence_unread_output()\n",
        "            pass\n",
        "tests/e2e/test_workers.py::"
        "test_a_run_waiting_hot_when_its_worker_alone_is_killed_completes_on_another_worker",
    ),
    (
        "a busy database's refusal asked again only after Prefect's back-off",
        "blocks/prefect_client.py",
        '    return get_client(httpx_settings={"event_hooks": {"response": [ask_again_soon]}})',
        "    return get_client()",
        "tests/unit/test_prefect_client.py::test_a_busy_databases_refusals_are_asked_again_soon",
    ),
    (
        "a busy database's refusal asked again soon many times over, never Prefect's back-off",
        "blocks/prefect_client.py",
        "    refusals = _refusals.get(response.request, 0) + 1",
        "    refusals = 1",
        "tests/unit/test_prefect_client.py::"
        "test_a_database_that_stays_busy_gets_prefects_back_off_after_the_quick_retries",
    ),
    (
        "quick re-asks that add to a burst of busy refusals",
        "blocks/prefect_client.py",
        "    elif refusals <= len(QUICK_RETRY_SECONDS) and not burst:",
        "    elif refusals <= len(QUICK_RETRY_SECONDS):",
        "tests/unit/test_prefect_client.py::"
        "test_under_a_burst_of_refusals_every_request_keeps_prefects_back_off",
    ),
    (
        "a busy database's last refusal given back only after Prefect's sleep",
        "blocks/prefect_client.py",
        '        response.headers["Retry-After"] = "0"  # the last attempt: '
        "give the refusal back now",
        "        pass",
        "tests/unit/test_prefect_client.py::"
        "test_a_database_that_stays_busy_gets_prefects_back_off_after_the_quick_retries",
    ),
    (
        "a run read as ended when its fork server is killed",
        "deployments/fork_server_children.py",
        "            self._pidfd = pidfd_open(self.pid)",
        "            self._pidfd = None",
        "tests/unit/test_fork_server.py::"
        "test_a_run_outlives_a_killed_fork_server_and_is_not_read_as_ended[orphan-to-init]",
    ),
    (
        "a flow that does not watch over its process",
        "flows/authenticate.py",
        "    on_running=[watch_supervision],",
        "    on_running=[],",
        "tests/unit/test_supervision.py::test_every_deployed_flow_watches_its_supervision",
    ),
    (
        "a console log into a dead pipe that ends the run",
        "flows/steps/supervision.py",
        "        handler.console.on_broken_pipe = _orphaned_by_a_console_log",
        "        pass  #",
        "tests/unit/test_supervision.py::test_a_console_log_into_a_dead_pipe_does_not_end_the_run",
    ),
    (
        "a run cancelled as it was resumed keeps its code stored",
        "flows/steps/hot_wait.py",
        "            # Cancelled as it was resumed (a deployment limit that cancels new runs).\n"
        "            await _forget_stored_answer(client, run.id, keyset)",
        "            pass",
        "tests/unit/test_tasks_hot_wait.py::"
        "test_a_claim_refused_for_the_deployments_concurrency_limit_says_so",
    ),
    (
        "a claim refused for the deployment's concurrency limit not said in the run's log",
        "flows/steps/hot_wait.py",
        "        _log_claim_refused(state)",
        "        pass",
        "tests/unit/test_tasks_hot_wait.py::"
        "test_a_claim_refused_for_the_deployments_concurrency_limit_says_so",
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

"""The per-run state and the reading of the person's answer."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from open_connectors import (
    AuthorizationDeniedError,
    StateMismatchError,
    authorization_id_from_state,
    derive_state,
    read_authorization_answer,
)
from open_connectors.errors import AuthorizationError, InvalidAuthorizationAnswerError

RUN = UUID("0b7e2c3a-1f6d-4c1e-9a55-3d2f1e0c9b8a")
STATE = derive_state(RUN, "app-secret")


def test_state_is_stable_per_run_and_key_and_names_the_run() -> None:
    assert derive_state(RUN, "app-secret") == STATE
    assert derive_state(uuid4(), "app-secret") != STATE
    assert derive_state(RUN, "another-secret") != STATE
    assert authorization_id_from_state(STATE) == RUN
    assert "app-secret" not in STATE


@pytest.mark.parametrize(
    "state", [None, "", "infusionsofterp", STATE + "x", STATE.upper(), "0" * 32 + "." + "a" * 10]
)
def test_foreign_states_name_no_run(state: str | None) -> None:
    assert authorization_id_from_state(state) is None


def test_a_code_with_the_right_state_is_granted() -> None:
    grant = read_authorization_answer(expected_state=STATE, code=" abc123 ", state=STATE)
    assert grant.code.get_secret_value() == "abc123" and grant.state_checked


def test_a_bare_code_is_accepted_without_a_state() -> None:
    grant = read_authorization_answer(expected_state=STATE, code="abc123")
    assert grant.code.get_secret_value() == "abc123" and not grant.state_checked


def test_the_whole_redirect_url_can_be_pasted_into_code() -> None:
    url = f"https://auth.cloudelements.io/oauth?code=abc%2F123&state={STATE}"
    grant = read_authorization_answer(expected_state=STATE, code=url)
    assert grant.code.get_secret_value() == "abc/123" and grant.state_checked


def test_a_bare_query_string_works_too() -> None:
    grant = read_authorization_answer(expected_state=STATE, code=f"?state={STATE}&code=xyz")
    assert grant.code.get_secret_value() == "xyz"


def test_a_pasted_redirect_of_another_run_is_refused() -> None:
    other = derive_state(uuid4(), "app-secret")
    with pytest.raises(StateMismatchError):
        read_authorization_answer(expected_state=STATE, code=f"https://cb/?code=abc&state={other}")


def test_a_wrong_state_is_refused_even_with_an_error() -> None:
    with pytest.raises(StateMismatchError):
        read_authorization_answer(expected_state=STATE, error="access_denied", state="forged")


def test_url_and_field_states_must_agree() -> None:
    with pytest.raises(StateMismatchError):
        read_authorization_answer(
            expected_state=STATE, code=f"https://cb/?code=abc&state={STATE}", state="other"
        )


def test_refusal_carries_the_provider_words() -> None:
    with pytest.raises(AuthorizationDeniedError) as raised:
        read_authorization_answer(
            expected_state=STATE,
            code=f"https://cb/?error=access_denied&error_description=The+user+denied+access.&state={STATE}",
        )
    assert raised.value.error == "access_denied"
    assert "The user denied access." in str(raised.value)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"code": "   "},
        {"code": "has space"},
        {"code": "x" * 3000},
        {"code": "https://cb/?nothing=here"},
        {"code": f"https://cb/?code=a&code=b&state={STATE}"},
        {"state": STATE},
    ],
)
def test_unusable_answers_are_refused_with_a_reason(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidAuthorizationAnswerError) as raised:
        read_authorization_answer(expected_state=STATE, **fields)
    assert str(raised.value)


@given(
    code=st.one_of(st.none(), st.text(max_size=300)),
    state=st.one_of(st.none(), st.text(max_size=100)),
    error=st.one_of(st.none(), st.text(max_size=50)),
    description=st.one_of(st.none(), st.text(max_size=100)),
)
def test_any_answer_is_granted_or_refused_in_words(
    code: str | None, state: str | None, error: str | None, description: str | None
) -> None:
    try:
        grant = read_authorization_answer(
            expected_state=STATE, code=code, state=state, error=error, error_description=description
        )
    except AuthorizationError as exc:
        assert str(exc)
    else:
        # A grant never comes with a foreign state.
        assert state is None or state.strip() in ("", STATE)
        assert grant.code.get_secret_value()


@given(st.uuids(), st.text(min_size=1, max_size=50))
def test_only_the_right_state_passes(run: UUID, key: str) -> None:
    state = derive_state(run, key)
    assert authorization_id_from_state(state) == run
    read_authorization_answer(expected_state=state, code="c", state=state)
    if state != STATE:
        with pytest.raises(StateMismatchError):
            read_authorization_answer(expected_state=STATE, code="c", state=state)

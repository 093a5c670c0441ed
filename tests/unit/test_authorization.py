"""The state (signed with the state key, rotation, unknown keys) and the reading of answers."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from open_connectors import (
    AuthorizationDeniedError,
    AuthorizationError,
    InvalidAuthorizationAnswerError,
    StateMismatchError,
    StateSigner,
    UnknownStateKeyError,
    code_digest,
    read_authorization_answer,
    used_code_key,
)
from open_connectors.authorization import (
    key_id,
    marker_is_for_wait,
    parse_state,
    prompt_of,
    used_code_marker,
)
from tests.states import client_secret_state

RUN = UUID("6f1f5a2e-0d7c-4e0b-9a8e-3f1b2c4d5e6f")
KEY = "state-key-0123456789abcdef"
CLIENT_SECRET = "oauth-client-secret"
SIGNER = StateSigner(KEY)
STATE = SIGNER.sign(RUN)
CODE = "the-authorization-code"


def answer(**fields: str | None) -> object:
    return read_authorization_answer(expected_state=STATE, signer=SIGNER, **fields)


# -- the signer ------------------------------------------------------------------------


def test_a_state_names_its_run_and_key_and_is_deterministic() -> None:
    assert StateSigner(KEY).sign(RUN) == STATE
    assert parse_state(STATE) == (RUN, key_id(KEY))
    assert SIGNER.verify(STATE) == RUN
    assert SIGNER.sign(uuid4()) != STATE
    assert StateSigner("another-state-key-0123").sign(RUN) != STATE
    assert len(key_id(KEY)) == 8 and KEY not in STATE


def test_a_state_signed_with_the_client_secret_does_not_verify() -> None:
    # Neither the old form (HMAC under the client secret) nor the new form under it.
    for forged in (client_secret_state(RUN, CLIENT_SECRET), StateSigner(CLIENT_SECRET).sign(RUN)):
        with pytest.raises(StateMismatchError):
            SIGNER.verify(forged)


def test_an_altered_state_is_a_mismatch_not_an_unknown_key() -> None:
    run_hex, kid, mac = STATE.split(".")
    other_run = uuid4().hex
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for altered in (f"{other_run}.{kid}.{mac}", f"{run_hex}.{kid}.{flipped}", "", "x.y.z"):
        with pytest.raises(StateMismatchError) as raised:
            SIGNER.verify(altered)
        assert not isinstance(raised.value, UnknownStateKeyError)


def test_rotation_keeps_previous_keys_valid_and_refuses_unknown_ones() -> None:
    rotated = StateSigner("new-state-key-0123456789", [KEY])
    assert rotated.verify(STATE) == RUN
    assert rotated.sign(RUN) != STATE  # new states use the new key
    assert rotated.current_key_id == key_id("new-state-key-0123456789")
    retired = StateSigner("newest-state-key-012345", ["new-state-key-0123456789"])
    with pytest.raises(UnknownStateKeyError) as raised:
        retired.verify(STATE)
    assert "rotated out" in str(raised.value) and STATE not in str(raised.value)


@given(st.uuids(), st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_signing_round_trips_and_keys_do_not_cross(run: UUID, key: str, other: str) -> None:
    signer = StateSigner(key)
    state = signer.sign(run)
    assert signer.verify(state) == run and signer.sign(run) == state
    assert StateSigner(other, [key]).verify(state) == run
    if key_id(other) != key_id(key):
        with pytest.raises(UnknownStateKeyError):
            StateSigner(other).verify(state)


def test_empty_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        StateSigner("")
    with pytest.raises(ValueError):
        StateSigner(KEY, [""])


def test_code_digest_keeps_no_code_and_is_stable_across_a_rotation() -> None:
    digest = code_digest(SIGNER, CODE, state=STATE)
    assert CODE not in digest and len(digest) == 32
    assert code_digest(SIGNER, "another-code", state=STATE) != digest
    assert code_digest(StateSigner("guess-key-0123456789"), CODE) != digest
    rotated = StateSigner("new-state-key-0123456789", [KEY])
    assert code_digest(rotated, CODE, state=STATE) == digest
    assert used_code_key(digest) == f"callback-{digest}"
    with pytest.raises(ValueError):
        used_code_key("not hex")


# -- the answer ------------------------------------------------------------------------


def test_a_code_with_this_runs_state_is_granted() -> None:
    grant = answer(code=f" {CODE} ", state=STATE)
    assert grant.code.get_secret_value() == CODE and grant.state_checked  # type: ignore[attr-defined]


def test_the_whole_redirect_address_is_read_with_keaps_extra_parameters() -> None:
    url = f"https://cb.example/oauth/callback?code={CODE}&scope=full%7Cdt123&state={STATE}"
    grant = answer(code=url)
    assert grant.code.get_secret_value() == CODE and grant.state_checked  # type: ignore[attr-defined]
    refusal = f"https://cb/?error=access_denied&error_uri=https%3A%2F%2Fx&state={STATE}"
    with pytest.raises(AuthorizationDeniedError):
        answer(code=refusal)


@pytest.mark.parametrize(
    "fields",
    [
        {"code": CODE},
        {"code": f"https://cb/?code={CODE}&state="},
        {"code": f"https://cb/?code={CODE}&scope=full"},
        {"code": f"?code={CODE}&state=%20"},
        {"error": "access_denied"},
        {"code": "https://cb/?error=access_denied&error_description=User+denied"},
    ],
)
def test_an_answer_without_this_runs_state_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidAuthorizationAnswerError) as raised:
        answer(**fields)
    assert "WHOLE address" in str(raised.value)
    assert CODE not in str(raised.value)


def test_a_bare_code_is_accepted_only_with_the_opt_in() -> None:
    grant = read_authorization_answer(
        expected_state=STATE, signer=SIGNER, allow_bare_code=True, code=CODE
    )
    assert grant.code.get_secret_value() == CODE and not grant.state_checked
    # Even with the opt-in: an empty state= in an address, a wrong state, a bare error.
    for fields in (
        {"code": f"https://cb/?code={CODE}&state="},
        {"error": "access_denied"},
    ):
        with pytest.raises(InvalidAuthorizationAnswerError):
            read_authorization_answer(
                expected_state=STATE, signer=SIGNER, allow_bare_code=True, **fields
            )
    with pytest.raises(StateMismatchError):
        read_authorization_answer(
            expected_state=STATE,
            signer=SIGNER,
            allow_bare_code=True,
            code=CODE,
            state=SIGNER.sign(uuid4()),
        )


def test_another_runs_state_is_refused_even_with_an_error() -> None:
    other = SIGNER.sign(uuid4())
    with pytest.raises(StateMismatchError):
        answer(code=f"https://cb/?code=abc&state={other}")
    with pytest.raises(StateMismatchError):
        answer(error="access_denied", state=other)
    with pytest.raises(StateMismatchError, match="does not match this authorization"):
        answer(code=CODE, state=client_secret_state(RUN, CLIENT_SECRET))


def test_a_link_signed_before_a_rotation_still_matches() -> None:
    rotated = StateSigner("new-state-key-0123456789", [KEY])
    expected_after_rerun = rotated.sign(RUN)
    grant = read_authorization_answer(
        expected_state=expected_after_rerun, signer=rotated, code=CODE, state=STATE
    )
    assert grant.state_checked
    with pytest.raises(UnknownStateKeyError):
        read_authorization_answer(
            expected_state=STATE, signer=StateSigner("x" * 20), code=CODE, state=STATE
        )


def test_without_a_signer_the_state_must_equal_the_expected_one() -> None:
    grant = read_authorization_answer(expected_state=STATE, code=CODE, state=STATE)
    assert grant.state_checked
    with pytest.raises(StateMismatchError):
        read_authorization_answer(expected_state=STATE, code=CODE, state=SIGNER.sign(uuid4()))


def test_url_and_field_states_must_agree() -> None:
    with pytest.raises(StateMismatchError):
        answer(code=f"https://cb/?code=abc&state={STATE}", state="other")


def test_refusal_carries_the_provider_words() -> None:
    with pytest.raises(AuthorizationDeniedError) as raised:
        answer(
            code=f"https://cb/?error=access_denied&error_description=User+denied+access+to+resource&state={STATE}"
        )
    assert raised.value.error == "access_denied"
    assert "User denied access to resource" in str(raised.value)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"code": "   "},
        {"code": "has space", "state": STATE},
        {"code": "x" * 3000, "state": STATE},
        {"code": "https://cb/?nothing=here"},
        {"code": f"https://cb/?code=a&code=b&state={STATE}"},
        {"state": STATE},
    ],
)
def test_unusable_answers_are_refused_with_a_reason(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidAuthorizationAnswerError) as raised:
        answer(**fields)
    assert str(raised.value)


_SAFE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=6)


@given(
    code=st.one_of(st.none(), st.text(max_size=300), _SAFE),
    state=st.one_of(st.none(), st.text(max_size=100), st.just(STATE)),
    error=st.one_of(st.none(), st.text(max_size=50)),
    description=st.one_of(st.none(), st.text(max_size=100)),
    allow_bare_code=st.booleans(),
)
def test_any_answer_is_granted_or_refused_in_words_without_its_values(
    code: str | None,
    state: str | None,
    error: str | None,
    description: str | None,
    allow_bare_code: bool,
) -> None:
    try:
        grant = read_authorization_answer(
            expected_state=STATE,
            signer=SIGNER,
            allow_bare_code=allow_bare_code,
            code=code,
            state=state,
            error=error,
            error_description=description,
        )
    except AuthorizationError as exc:
        words = str(exc)
        assert words
        assert STATE not in words
        provider_words = f"{error} {description}"
        for value in (code, quote(code or "")):
            if value and len(value.strip()) >= 6 and value.strip() not in provider_words:
                assert value.strip() not in words
    else:
        # A grant carries this run's state, or is a bare code with the opt-in.
        assert grant.state_checked or allow_bare_code
        assert state is None or state.strip() in ("", STATE)
        assert grant.code.get_secret_value()


def test_a_used_code_marker_names_its_wait_and_holds_no_code() -> None:
    marker = used_code_marker("suspended-authorization-1-response")
    assert marker_is_for_wait(marker, "suspended-authorization-1-response")
    assert not marker_is_for_wait(marker, "suspended-authorization-2-response")
    assert not marker_is_for_wait("not json", "suspended-authorization-1-response")
    assert not marker_is_for_wait("[1]", "suspended-authorization-1-response")
    assert not marker_is_for_wait('{"wait": 1}', "suspended-authorization-1-response")


def test_a_marker_for_a_prompts_hot_wait_holds_for_the_suspension_that_followed_it() -> None:
    # The receiver saw the hot wait and recorded it; its resume landed a moment later,
    # after the run had switched to the suspension of the same prompt (seen in CI).
    marker = used_code_marker("paused-authorization-1-hot-response")
    assert marker_is_for_wait(marker, "suspended-authorization-1-response")
    assert marker_is_for_wait(marker, "paused-authorization-1-hot-response")
    # A later prompt (the form shown again) never takes the same code.
    assert not marker_is_for_wait(marker, "suspended-authorization-2-response")
    assert not marker_is_for_wait(marker, "paused-authorization-2-hot-response")
    assert not marker_is_for_wait(
        used_code_marker("suspended-authorization-1-response"),
        "suspended-authorization-11-response",
    )
    assert prompt_of("suspended-authorization-1-response") == "authorization-1"
    assert prompt_of("paused-authorization-1-hot-schema") == "authorization-1"
    assert prompt_of("something-else") == "something-else"

"""The plain HTML pages the person sees after the provider's redirect.

Every value is escaped; none of them comes from the request (no code, state or
token is ever echoed).
"""

from __future__ import annotations

from html import escape

from callback_receiver.outcomes import CallbackResult, Outcome

_TEXT: dict[Outcome, tuple[str, str]] = {
    Outcome.AUTHORIZED: (
        "Authorization received",
        "Thank you. Access for {instance} was granted and the connection is being set up in "
        "Prefect. You can close this page.",
    ),
    Outcome.REFUSED: (
        "Access refused",
        "You refused access for {instance}. Nothing was connected. If this was a mistake, ask "
        "for a new authorization link.",
    ),
    Outcome.EXPIRED: (
        "This link has expired",
        "The authorization request for {instance} is no longer waiting. Ask for a new "
        "authorization link.",
    ),
    Outcome.ALREADY_USED: (
        "Already used",
        "This answer for {instance} was already used. Nothing more to do; you can close this "
        "page. If the authorization asks again, use the new link you are sent.",
    ),
    Outcome.ENDED: (
        "This authorization has ended",
        "The authorization request for {instance} has ended and can no longer be answered. Ask "
        "for a new authorization link if needed.",
    ),
    Outcome.UNKNOWN: (
        "Unknown authorization",
        "This address does not belong to any authorization request we know of. Use the link "
        "you were sent, or ask for a new one.",
    ),
    Outcome.INVALID: (
        "Invalid request",
        "This address is not a valid authorization answer ({detail}). Nothing was changed. Use "
        "the link you were sent, or ask for a new one.",
    ),
    Outcome.NOT_READY: (
        "Not ready yet",
        "The authorization request for {instance} is still being prepared. Reload this page in "
        "a few seconds.",
    ),
    Outcome.KEY_RETIRED: (
        "This link has expired",
        "This link was signed with a key that was rotated out; ask for a new link. Nothing "
        "was changed.",
    ),
    Outcome.BUSY: (
        "Too many requests",
        "The authorization service is busy. Nothing was changed; reload this page in a moment.",
    ),
    Outcome.WORKING: (
        "Still working",
        "Your answer is being passed on to Prefect, which is answering slowly. Reload this "
        "page in a few seconds to see the result; the answer is used once, however often "
        "you reload.",
    ),
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f5f6f8; color: #1f2933; margin: 0; }}
main {{ max-width: 34rem; margin: 12vh auto; background: #fff; padding: 2rem 2.25rem;
        border-radius: 12px; box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ font-size: 1.4rem; margin-top: 0; }}
.authorized h1 {{ color: #1a7f37; }} .refused h1, .invalid h1 {{ color: #b42318; }}
p {{ line-height: 1.5; }} small {{ color: #6b7280; }}
</style>
</head>
<body>
<main class="{outcome}" data-outcome="{outcome}">
<h1 id="title">{title}</h1>
<p id="message">{message}</p>
{run_link}
</main>
</body>
</html>
"""


def render(result: CallbackResult, *, run_url: str | None = None) -> str:
    """The HTML page for a callback's result.

    Args:
        result: What happened.
        run_url: The run's page in the Prefect UI (from `RunLinks`), when known.
    """
    title, message = _TEXT[result.outcome]
    instance = f"“{result.instance_name}”" if result.instance_name else "this connection"
    run_link = ""
    if run_url:
        run_link = f'<p><small><a href="{escape(run_url)}">Open the run in Prefect</a></small></p>'
    return _PAGE.format(
        title=escape(title),
        outcome=escape(result.outcome.value),
        message=escape(message.format(instance=instance, detail=result.detail or "malformed")),
        run_link=run_link,
    )

"""HTML pages of the provider stand-in and of the callback landing page.

Plain, self-contained pages (no external assets). Jinja2 autoescaping escapes
everything echoed back.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment, StrictUndefined

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font-family: system-ui, sans-serif; background: #f4f6f8; color: #1f2933; margin: 0; }
  main { max-width: 34rem; margin: 3rem auto; background: #fff; border-radius: 8px;
         padding: 2rem; box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }
  h1 { font-size: 1.4rem; margin-top: 0; }
  .note { color: #52606d; font-size: .9rem; }
  .error { color: #a61b1b; }
  code { background: #eef1f4; padding: .1rem .3rem; border-radius: 4px; word-break: break-all; }
  .buttons { display: flex; gap: 1rem; margin-top: 1.5rem; }
  button { font-size: 1rem; padding: .6rem 1.6rem; border-radius: 6px; border: 1px solid #9aa5b1;
           background: #fff; cursor: pointer; }
  button#approve { background: #2f7d32; border-color: #2f7d32; color: #fff; }
</style>
</head>
<body>
<main>
<p class="note">{{ banner }}</p>
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

_CONSENT = """{% extends "base" %}
{% block content %}
<h1>Allow {{ app_name }} to access your Keap account?</h1>
<p><strong>{{ app_name }}</strong> asks for access to the Keap account
<strong>{{ account }}</strong>.</p>
<p>If you allow it, the application can read and change everything in that account:
contacts, companies, opportunities, orders, products and settings (scope
<code>full</code>). You can revoke this access at any time.</p>
<p class="note">After you choose, you will be sent back to <code>{{ redirect_host }}</code>.</p>
<form method="post" action="/provider/app/oauth/decision">
{% for name, value in fields.items() %}
<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}
<div class="buttons">
<button type="submit" name="decision" value="approve" id="approve">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</div>
</form>
{% endblock %}
"""

_ERROR = """{% extends "base" %}
{% block content %}
<h1>This authorization request cannot be completed</h1>
<p class="error" id="error-message">{{ message }}</p>
<p>You were not sent back to the application, because the request could not be verified.
Ask the application's owner to check its OAuth settings (client id and redirect URI), then
start again.</p>
{% endblock %}
"""

_LANDING = """{% extends "base" %}
{% block content %}
{% if error %}
<h1>Authorization was not granted</h1>
<p class="error">The provider answered <code id="error">{{ error }}</code>
{%- if error_description %}: <span id="error-description">{{ error_description }}</span>
{%- endif %}</p>
{% elif code %}
<h1>Authorization granted</h1>
<p>Authorization code: <code id="code">{{ code }}</code></p>
{% else %}
<h1>Nothing to authorize</h1>
<p class="error">This address carries neither a <code>code</code> nor an <code>error</code>.</p>
{% endif %}
{% if state is not none %}<p>State: <code id="state">{{ state }}</code></p>{% endif %}
<p>Copy the full address below into the Prefect resume form of the waiting flow run,
so it can finish the authorization:</p>
<p><code id="redirect-url">{{ url }}</code></p>
<p class="note">The code works once and only for a few minutes. Do not share it.</p>
{% endblock %}
"""

_KEAP_BANNER = "Keap sandbox: a local stand-in, no real account is involved."
_PLATFORM_BANNER = (
    "Open Connectors sandbox: a local stand-in for the platform's OAuth callback page."
)

_ENV = Environment(
    loader=DictLoader({"base": _BASE, "consent": _CONSENT, "error": _ERROR, "landing": _LANDING}),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

HTML_HEADERS = {
    "Cache-Control": "no-store",
    # No scripts, no external assets, and the consent page cannot be framed (clickjacking).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def render_consent(
    *, app_name: str, account: str, redirect_host: str, fields: dict[str, str]
) -> str:
    """Render the consent page.

    Args:
        app_name: The name of the app asking for access.
        account: The Keap account to authorize.
        redirect_host: Where the person will be sent back to.
        fields: The hidden form fields carried to the decision endpoint.
    """
    return _ENV.get_template("consent").render(
        title="Authorize access - Keap sandbox",
        banner=_KEAP_BANNER,
        app_name=app_name,
        account=account,
        redirect_host=redirect_host,
        fields=fields,
    )


def render_error(message: str) -> str:
    """Render the page for an authorization request that must not redirect."""
    return _ENV.get_template("error").render(
        title="Invalid request - Keap sandbox", banner=_KEAP_BANNER, message=message
    )


def render_landing(
    *,
    url: str,
    code: str | None,
    state: str | None,
    error: str | None,
    error_description: str | None,
) -> str:
    """Render the callback landing page that shows the address to copy."""
    return _ENV.get_template("landing").render(
        title="Authorization result",
        banner=_PLATFORM_BANNER,
        url=url,
        code=code,
        state=state,
        error=error,
        error_description=error_description,
    )

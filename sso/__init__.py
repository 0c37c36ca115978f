"""Single sign-on to the dashboard with OpenID Connect (mozilla-django-oidc)."""

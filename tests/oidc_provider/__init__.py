"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit.

A separate tiny Django project (its own settings, SQLite database and RSA signing key in a
state folder the tests make), served on a free loopback port by `serve.py` in a
subprocess. The people who can sign in, their groups and the `amr` claim the provider
asserts are read from `people.json` in the state folder at each sign-in, so a test can
change them between sign-ins.
"""

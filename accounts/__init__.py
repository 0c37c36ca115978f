"""Partners, users, roles, credentials, API tokens, login policy and bans."""

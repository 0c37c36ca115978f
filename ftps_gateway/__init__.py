"""The FTPS gateway: a thin pyftpdlib adapter over accounts and transfers services."""

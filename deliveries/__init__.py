"""Partner deliveries: pushes to and pulls from partners' FTPS servers, with receipts."""

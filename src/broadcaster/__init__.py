"""broadcaster: one message to many customers on a messaging channel."""

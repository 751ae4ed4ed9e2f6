"""LINE Messaging API channel for broadcaster."""

"""softequiv."""

"""Built-in datasets and loaders for user files."""

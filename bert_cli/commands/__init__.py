"""One module per command. Each only parses options and calls one library function."""

"""The sans-IO protocol core: parsing, replies, state machines. Imports only the standard library."""

"""Interop tests: real third-party FTP clients and servers against pyftps."""

"""End-to-end tests of the server over loopback sockets (in-process server, raw FTP(S) client)."""

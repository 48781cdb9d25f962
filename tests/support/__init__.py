"""Helpers shared by test layers: free ports, throw-away TLS certificates, supervised subprocesses."""

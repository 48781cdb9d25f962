"""pyftps: an FTPS server and client (explicit and implicit FTPS, MS-FTPS / RFC 4217) on a sans-IO core."""

__version__ = "0.1.0"

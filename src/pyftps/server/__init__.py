"""The asyncio I/O layer: the only package that owns sockets, threads and timers."""

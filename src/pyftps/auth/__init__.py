"""Authentication backends behind one small synchronous interface (see base.py)."""

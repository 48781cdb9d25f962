"""File storage backends behind one small synchronous interface (see base.py)."""

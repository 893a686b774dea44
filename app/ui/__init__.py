"""Chainlit shell: the only package that imports chainlit (entry point ``app/ui/main.py``)."""

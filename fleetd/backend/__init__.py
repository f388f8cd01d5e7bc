"""The Redis side: the one link, key names, the Lua transition scripts and their row codec."""

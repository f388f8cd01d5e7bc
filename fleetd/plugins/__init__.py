"""Plugins: the hook specifications, discovery through entry points, the built-in noop."""

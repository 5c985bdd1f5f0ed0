"""Test helpers for users of this provider: a pytest plugin (loaded automatically) and tokens."""

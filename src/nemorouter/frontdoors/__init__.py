"""The front doors: one per public wire format a client may speak (see issue 21, scope 1)."""

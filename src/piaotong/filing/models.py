"""Models of the filing app."""

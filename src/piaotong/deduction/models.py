"""Models of the deduction app."""

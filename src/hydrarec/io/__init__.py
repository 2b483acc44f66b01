"""Plumbing every stage writes through: atomic writes, checked reads, the run log,
progress bars. Imports no other hydrarec module (but errors)."""

"""Leaderboard: scored entries with provenance, the published numbers, and the rendered tables."""

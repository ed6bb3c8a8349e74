"""Canary rollout with automatic rollback: spec, decisions, state, router, controller."""

"""Thin adapters to host frameworks (TRL, verl). No math here: it lives in rvpo.core."""

"""Mask update rules."""

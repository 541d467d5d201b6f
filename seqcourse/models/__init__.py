"""The model families of the course, one family per module."""

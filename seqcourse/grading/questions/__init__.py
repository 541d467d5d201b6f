"""Graded questions, one module per chapter; each module defines ``QUESTIONS`` (see ``registry``)."""

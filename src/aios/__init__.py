"""AIOS: an operating system for AI agents, as a user-space kernel on Linux."""

__version__ = "0.1.0"

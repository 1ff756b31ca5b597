"""The startup flows, one module each: create (recover, restore and
migration destination follow the same shape)."""

from .create import CreateJob

__all__ = ["CreateJob"]

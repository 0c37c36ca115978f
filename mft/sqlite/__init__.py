"""Portside's SQLite database backend (`ENGINE: "mft.sqlite"`): see `base`."""

"""Revisions of the send log schema, oldest first: never edit one that has shipped, add the next."""

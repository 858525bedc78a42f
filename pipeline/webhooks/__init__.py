"""Bounce and complaint webhooks: one module per provider scheme, one ``events`` module
that applies what they report. Each ``verify`` checks the provider's own signature or
secret first and only then reads the payload; an unverified call changes nothing."""

"""The bounce mailbox: bounces, complaints and mailto unsubscribes that arrive as email.

``classify`` reads one message (pure), ``mailbox`` reads an IMAP folder or an mbox file,
``process`` applies what they say through the webhooks' path (``webhooks.apply``).
"""

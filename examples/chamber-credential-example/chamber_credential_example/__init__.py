"""chamber-credential-example: a third-party credential type for Containment Chamber.

``keyfile-pin`` combines a key file on removable media with a PIN (see :mod:`.credential`).
The entry point is :mod:`.plugin`; this package imports nothing at start-up on purpose.
"""

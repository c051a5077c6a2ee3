"""Pure cryptographic functions: no I/O, no global state beyond immutable tables."""

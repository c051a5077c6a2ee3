"""The HTTP API: Falcon resources and middleware served by waitress."""

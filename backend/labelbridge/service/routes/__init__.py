"""The HTTP routes, one module per audience: Label Studio's ML-backend protocol (``ml``), its
webhooks (``webhook``), operators (``ops``)."""

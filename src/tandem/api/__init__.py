"""The DRUM API description Tandem serves (``openapi.yaml``)."""

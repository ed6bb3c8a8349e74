"""Thin HTTP adapters over :class:`tandem.core.service.PredictionService`."""

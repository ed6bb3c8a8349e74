"""The framework-free serving core: model loading, input parsing, scoring, output shaping, errors.

Nothing in this package imports Flask, FastAPI, Starlette, Werkzeug, Gunicorn or Uvicorn.
"""

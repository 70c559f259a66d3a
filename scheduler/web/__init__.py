"""The web layer: the only place that touches flask.request."""

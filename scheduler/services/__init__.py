"""Domain services: plain Python that takes a Session, plain values and `now`; no Flask."""

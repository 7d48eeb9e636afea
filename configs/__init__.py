"""Training configs, one thin file per supervision regime; what they share: pointseg_jax/config_lib.py."""

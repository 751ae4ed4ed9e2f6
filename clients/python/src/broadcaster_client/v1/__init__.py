"""Generated from protos/broadcaster/v1 by scripts/protos.py. Do not edit."""

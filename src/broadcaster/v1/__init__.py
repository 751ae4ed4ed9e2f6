"""Generated from protos/broadcaster/v1. Do not edit."""

"""Pure product rules: resources, names, validation and errors. No I/O, no framework."""

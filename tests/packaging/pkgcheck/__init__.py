"""The groups of run_packaging_checks, one module per packaging route."""

"""Templates of the frontend configuration (frontend.xml) for glidein-triton; package data only."""

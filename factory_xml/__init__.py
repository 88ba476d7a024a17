"""Templates of the factory configuration (glideinWMS.xml) for glidein-triton; package data only."""

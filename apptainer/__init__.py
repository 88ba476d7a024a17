"""Definitions of the server and client images (Apptainer .def, Dockerfile); package data only."""

"""The local glidein: a simulated GlideinWMS glidein, the pytriton server launcher, the demo, local
jobs, the soak and the fault table. Used by the demo, the tests and the benchmarks; nothing that ships to
worker nodes or operators imports it."""

"""Worker-node side of glidein-triton.

Everything under this package runs on a bare worker node: Python >= 3.9 and its standard library only
(psutil is never required). It is shipped to the node as plain files in the payload tarball.
"""

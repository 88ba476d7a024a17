"""The node check: whether Triton can run on this node (runtime, image, GPUs and driver, --nv
libraries, ports, disk), as a table or JSON. Standard library only; runs from the worker tarball too."""

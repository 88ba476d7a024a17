"""The job side: finding the glidein's Triton server from a job, and submit-file examples."""

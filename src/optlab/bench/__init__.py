"""`optlab bench`: throughput against the machine's matmul peak and against plain PyTorch loops."""

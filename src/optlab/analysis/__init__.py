"""From the store to numbers: statistics over seeds, learning-rate tuning, convergence, claims."""

"""Real load balancers in front of real replicas, each with the distribution it must produce."""

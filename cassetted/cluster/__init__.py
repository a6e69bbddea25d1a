"""Songs made on other machines: the daemon schedules jobs on NATS JetStream, workers anywhere render them."""

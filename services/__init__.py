"""The three services and the kit they share."""

"""What every service needs, written once: settings, auth, errors, health, database, outbox."""

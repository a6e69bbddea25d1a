"""Persistence: the database models and migrations, and credentials at rest."""

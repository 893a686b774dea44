"""Alembic migrations of the review store (Bookbot tables and Chainlit's); see app.review.db."""

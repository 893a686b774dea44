"""Review area: storage of turns and reviews (SQLAlchemy 2 + Alembic, SQLite or PostgreSQL),
the editors' review queue, agreement statistics and dataset exports.

Entry points: `app.review.db.upgrade(url)` (schema, Chainlit's tables included),
`app.review.store.ReviewStore(engine_or_url)` (TurnSink, reviews, queue, users, snapshots),
`app.review.exports.export(...)`, `app.review.agreement.review_stats(...)`, and the CLI
commands in `app.review.commands`.  Nothing is imported or connected at package import.
"""

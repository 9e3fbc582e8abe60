"""A Telegram bot that answers questions about civil-society news from a YAML knowledge base."""

"""Storage of conversations, answers and user feedback in one SQLite database, and its export for training."""

from .config import StorageConfig, db_path
from .errors import InvalidInput, NotFound, StoreError
from .store import Adapter, Conversation, Demonstration, FeedbackStore, Message, Ranking, Vote

__all__ = [
    "Adapter",
    "Conversation",
    "Demonstration",
    "FeedbackStore",
    "InvalidInput",
    "Message",
    "NotFound",
    "Ranking",
    "StorageConfig",
    "StoreError",
    "Vote",
    "db_path",
]

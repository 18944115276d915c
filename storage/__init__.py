"""Storage of conversations, answers and user feedback in one SQLite database, and its export for training."""

from .config import StorageConfig, db_path
from .errors import Conflict, InvalidInput, NotFound, StoreError
from .records import Adapter, Conversation, Demonstration, Message, Ranking, Round, Vote
from .store import FeedbackStore

__all__ = [
    "Adapter",
    "Conflict",
    "Conversation",
    "Demonstration",
    "FeedbackStore",
    "InvalidInput",
    "Message",
    "NotFound",
    "Ranking",
    "Round",
    "StorageConfig",
    "StoreError",
    "Vote",
    "db_path",
]

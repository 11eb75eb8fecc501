"""repsend: personal notes from each customer's own rep to the dormant contacts in your SFA."""

__version__ = "0.1.0"

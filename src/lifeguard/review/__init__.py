"""Review: cases from matches and user reports, the moderator queue, decisions, appeals."""

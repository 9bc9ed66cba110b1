"""End-to-end-encrypted messaging support: client toolkit, message franking, private matching."""

"""Safety signals on text: conversation risk scoring (grooming and sextortion tactics)."""

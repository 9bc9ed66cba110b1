"""Hash banks: lists of signals with provenance, their lifecycle, import and export.

from lifeguard.banks import Banks, import_entries, export_bank
banks = Banks(Database.open())
banks.create_bank("PHOTO_DNA_FREE_LIST", kind="block", categories=["A1"])
result = import_entries(banks, "PHOTO_DNA_FREE_LIST", "hashes.csv")
"""

from lifeguard.banks.exporter import ExportResult, export_bank
from lifeguard.banks.formats import FORMATS, detect_format
from lifeguard.banks.importer import ImportResult, import_entries
from lifeguard.banks.service import (
    ActiveEntry,
    AddResult,
    BankInfo,
    Banks,
    EntryChange,
    EntryInfo,
    EntryPage,
    ImportJobInfo,
    InvalidField,
    Rejection,
    validate_bank_name,
)

__all__ = [
    "FORMATS",
    "ActiveEntry",
    "AddResult",
    "BankInfo",
    "Banks",
    "EntryChange",
    "EntryInfo",
    "EntryPage",
    "ExportResult",
    "ImportJobInfo",
    "ImportResult",
    "InvalidField",
    "Rejection",
    "detect_format",
    "export_bank",
    "import_entries",
    "validate_bank_name",
]

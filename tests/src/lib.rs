//! Helpers for starting real sixfold processes in tests.

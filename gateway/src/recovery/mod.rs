//! Rebuilding the metadata from the nodes alone (issue #13): the rules that decide which
//! files the chunks on the nodes bring back ([`rules`]). The inventory collection and the
//! `admin recover` command build on them.

pub mod rules;

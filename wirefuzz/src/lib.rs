//! The wire-level test tools of corestream: the structure-aware fuzzer
//! (`corestream-wirefuzz`, src/main.rs) and the differential tester
//! (`corestream-wirediff`, `diff/`), which share the framing in `wire.rs`.

pub mod diff;
pub mod wire;

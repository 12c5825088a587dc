//! corestream: a Kafka-wire-compatible, thread-per-core message broker.
//! The binary (`main.rs`) is its CLI; this library is everything else.
//!
//! - `config.rs`: the TOML config and its validation.
//! - `node/`: start-up, shards (one pinned glommio executor per core), the
//!   routing path between shards, the controller's execution.
//! - `kafka/`: the Kafka front end: connections and one file per API.
//! - `controller/`: cluster metadata, its log, topic configs, placement.
//! - the storage, Raft and per-shard runtime live in the `corestream-shards`
//!   crate (`shards/`).
//! - `group/`: the consumer-group coordinator.
//! - `fuzz.rs`: entry points for the fuzz targets (`fuzz/`).

pub mod cli;
pub mod config;
pub mod controller;
pub mod doctor;
pub mod fuzz;
pub mod group;
pub mod kafka;
pub mod node;
pub mod security;

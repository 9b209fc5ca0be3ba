//! The one support module of the CLI's integration tests: each test file declares
//! `mod support;` and uses the parts it needs.
//!
//! - `require` and `registry` are rbuild-core's (`builder-core/tests/support/`), shared:
//!   preconditions (root, tools, users) and a private docker-registry;
//! - `run`: fixtures, stores and the rbuild binary; `reliability`: the same for the
//!   reliability suite; `scratch`: configs, stores and contexts of one test that runs
//!   the binary; `tmux`: a terminal to drive;
//! - `attack*`: the independent attack suites' helpers.
#![allow(dead_code)]

#[path = "../../../builder-core/tests/support/registry.rs"]
pub mod registry;
#[path = "../../../builder-core/tests/support/require.rs"]
pub mod require;

pub mod attack;
pub mod attack_archives;
pub mod attack_context;
pub mod attack_net;
pub mod attack_store;
pub mod reliability;
pub mod run;
pub mod scratch;
pub mod tmux;

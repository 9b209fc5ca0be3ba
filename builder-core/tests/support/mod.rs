//! The one support module of rbuild-core's integration tests: each test file declares
//! `mod support;` and uses the parts it needs.
//!
//! - `require`: preconditions (root, tools, users), shared with the CLI's tests;
//! - `registry`: a private docker-registry, shared with the CLI's tests;
//! - `images`: small images to push and pull, skopeo;
//! - `build`: a store with the busybox fixture, builds of Dockerfile text;
//! - `copy`: contexts and trees for the COPY/ADD tests;
//! - `exec`: a busybox base, layer stacks, "run a step and diff it";
//! - `tree`: a directory read entry by entry and compared, the one tree snapshot;
//! - `storage`: its snapshots for the layer and store tests;
//! - `probe`: the boundary probe, a static C program.
#![allow(dead_code)]

pub mod build;
pub mod copy;
pub mod exec;
pub mod images;
pub mod probe;
pub mod registry;
pub mod require;
pub mod storage;
pub mod tree;

//! One module per subcommand.

pub mod debug;
pub mod graph;
pub mod version;

//! One module per subcommand.

pub mod debug;
pub mod version;

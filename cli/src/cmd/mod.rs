//! One module per subcommand.

pub mod debug;
pub mod graph;
pub mod version;
// storage: image commands
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod prune;
pub mod rmi;
pub mod save;
pub mod store;
pub mod tag;
// completion and manual pages, generated from the clap definitions
pub mod completion;
pub mod man;

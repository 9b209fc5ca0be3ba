//! One module per subcommand.

pub mod build;
// `build`'s flag values and `--ssh` agents (beside it: a folder named `build` reads as
// build output to tools)
mod build_flags;
pub(crate) mod build_ssh;
// `--platform` of build, run and inspect
pub mod debug;
pub mod graph;
mod platform_arg;
pub mod version;
// storage: image commands
pub mod history;
pub mod image;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod prune;
pub mod rmi;
pub mod save;
pub mod store;
pub mod system;
pub mod tag;
// registry: pull, push, login, logout
pub mod login;
pub mod logout;
pub mod pull;
pub mod push;
// containers: run a stored image
pub mod run;
// completion and manual pages, generated from the clap definitions
pub mod completion;
pub mod man;

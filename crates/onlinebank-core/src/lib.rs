//! The shared kernel of onlinebank: what every role agrees on.
//!
//! Money and identifiers that can only hold valid values, the event envelope and event types,
//! failure reasons and the one HTTP error shape, bearer tokens, settings, and the SQLite and HTTP
//! plumbing every role uses. Role crates never import each other; they meet here.

pub mod ambient;
pub mod build_info;
pub mod client_addr;
pub mod command;
pub mod context;
pub mod db;
pub mod error;
pub mod event;
pub mod framing;
pub mod http;
pub mod ids;
pub mod internal;
pub mod log_limit;
pub mod metrics;
pub mod money;
pub mod otel;
pub mod peer;
pub mod quiet;
pub mod reason;
pub mod role;
pub mod secret;
pub mod server;
pub mod settings;
pub mod time;
pub mod token;
pub mod trace;

pub use context::{RoleContext, RoleParts};
pub use error::{ApiError, ErrorCode};
pub use peer::LocalRoles;
pub use reason::Reason;
pub use role::Role;
pub use settings::Settings;
